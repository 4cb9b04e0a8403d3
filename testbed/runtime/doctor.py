"""`testbed doctor` and `testbed version`: what this machine has for labs, and how to get what it lacks. Read-only:
nothing is installed or started here."""

from __future__ import annotations

import gzip
import os
import platform
import shutil
from pathlib import Path
from typing import Any

import testbed

SETUP = ("scripts/host-setup.sh in the testbed repository does it (apt-get install docker.io mmdebstrap "
         "debian-archive-keyring; dockerd --iptables=false --ip-masq=false --bridge=none)")
KSM = "/sys/kernel/mm/ksm/run"
LAUNCHER = "/usr/local/lib/testbed/engine"  # where scripts/host-setup.sh installs the runc shim's launcher
# kernel option → (what needs it, required)
KERNEL = {
    "CONFIG_VXLAN": ("vxlan pod network", True),
    "CONFIG_BRIDGE": ("pod bridges and the underlay", True),
    "CONFIG_VETH": ("pod links", True),
    "CONFIG_BRIDGE_NETFILTER": ("Service rules on bridged traffic (br_netfilter)", True),
    "CONFIG_NF_TABLES": ("kube-proxy nftables mode, NetworkPolicy, egress NAT", True),
    "CONFIG_NF_CONNTRACK": ("Services and stateful policy", True),
    "CONFIG_IP_SET": ("NetworkPolicy with kube-proxy in iptables mode", False),
    "CONFIG_NETFILTER_XT_MATCH_STATISTIC": ("kube-proxy iptables mode", False),
    "CONFIG_IP_VS": ("IPVS (not used by testbed; tests skip what needs it)", False),
    "CONFIG_NET_SCH_NETEM": ("netem: `testbed fault delay` uses it where present, else a userspace delayer fed "
                             "by iptables NFQUEUE", False),
    "CONFIG_NETFILTER_NETLINK_QUEUE": ("NFQUEUE: `testbed fault delay` without netem", False),
    "CONFIG_IP_SCTP": ("SCTP sockets (SCTP probes are skipped without them)", False),
}


def _check(name: str, ok: bool, detail: str, fix: str = "", required: bool = True) -> dict[str, Any]:
    return {"name": name, "ok": ok, "required": required, "detail": detail, "fix": "" if ok else fix}


def kernel_config() -> dict[str, str] | None:
    """The running kernel's options (y/m), from /proc/config.gz or /boot; None when neither is readable."""
    for path in (Path("/proc/config.gz"), Path(f"/boot/config-{platform.release()}")):
        try:
            raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        except OSError:
            continue
        out = {}
        for line in raw.decode(errors="replace").splitlines():
            key, sep, value = line.partition("=")
            if sep and key.startswith("CONFIG_"):
                out[key] = value
        return out
    return None


def _engine() -> tuple[Any, dict[str, Any]]:
    try:
        from testbed.runtime import docker as rt

        client = rt.connect()
        version = client.version().get("Version", "?")
        return client, _check("docker engine", True, f"reachable, version {version}")
    except Exception as e:  # any failure to reach it is the finding
        return None, _check("docker engine", False, f"not reachable ({str(e)[:200]})", SETUP)


def _capabilities() -> dict[str, Any]:
    caps = 0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                caps = int(line.split()[1], 16)
    except OSError:
        pass
    need = {"CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21}
    missing = [n for n, bit in need.items() if not caps >> bit & 1]
    return _check("capabilities", not missing, "root with CAP_NET_ADMIN and CAP_SYS_ADMIN" if not missing else
                  f"missing {', '.join(missing)} (labs enter network namespaces)", "run testbed as root (sudo)")


def _merging() -> dict[str, Any]:
    """Same-page merging (KSM), which folds the pages the nodes' agents copied alike back into one."""
    try:
        on = Path(KSM).read_text().strip() == "1"
    except OSError:
        return _check("same-page merging", False, "the kernel has no KSM: an idle node keeps about 15 MiB "
                                                  "instead of 10", required=False)
    return _check("same-page merging", on, "on: the nodes' agents share the pages they copied alike (an idle node "
                  "about 10 MiB, a few minutes after `up`)" if on else "off: an idle node keeps about 15 MiB "
                  "instead of 10", f"echo 1 > {KSM} (scripts/host-setup.sh does it)", required=False)


def shims_shared(client: Any) -> bool | None:
    """Whether the engine serves a lab's machines from shared runc shims (runtime/docker.SHIM_GROUP): Docker 24+ takes
    the group from the API; Docker 20.10 needs testbed's launcher first on its containerd's PATH
    (scripts/engine/containerd-shim-runc-v2). None when this machine cannot tell: no containerd in sight."""
    try:
        if tuple(int(x) for x in client.version()["ApiVersion"].split(".")) >= (1, 43):
            return True
    except (KeyError, ValueError, AttributeError):
        pass
    from testbed.runtime.docker import processes_named

    for _, env in processes_named("containerd\n", "environ"):  # containerd itself, not its shims
        path = next((e[5:].decode(errors="replace") for e in env if e.startswith(b"PATH=")), "")
        return LAUNCHER in path.split(":")
    return None


def _shims(client: Any) -> dict[str, Any]:
    shared = shims_shared(client)
    if shared is None:
        return _check("shared shim", True, "cannot tell whether a lab's machines share containerd shims: the "
                      "engine's containerd is not on this machine",
                      required=False)
    return _check("shared shim", shared, "a lab's machines share its four containerd shims" if shared else
                  "each machine has its own containerd shim: about 2.8 MiB more a node",
                  "start the engine with scripts/host-setup.sh (its shim launcher first on the engine's PATH)",
                  required=False)


def checks() -> list[dict[str, Any]]:
    client, engine = _engine()
    out = [_check("python", True, platform.python_version()), engine, _capabilities()]
    config = kernel_config()
    for option, (why, required) in KERNEL.items():
        if config is None:
            out.append(_check(option, True, f"kernel config not readable: assumed ({why})", required=False))
            continue
        value = config.get(option)
        out.append(_check(option, value in ("y", "m"), f"{value or 'absent'}: {why}",
                          f"a kernel with {option}=y or m" if required else "", required))
    from testbed.runtime import images as img

    present = client is not None and img.present(client)
    has_builder = shutil.which("mmdebstrap") is not None
    out.append(_check("node image", present or has_builder,
                      f"{img.reference()} {'present' if present else 'missing'}; mmdebstrap "
                      f"{'installed' if has_builder else 'missing'}",
                      "apt-get install mmdebstrap debian-archive-keyring (then `testbed images build`), or "
                      "`testbed images load FILE`"))
    out.append(_merging())
    if client is not None:
        out.append(_shims(client))
    root = "/var/lib/docker"
    if client is not None:
        root = client.info().get("DockerRootDir", root)
    try:
        free = shutil.disk_usage(root if os.path.exists(root) else "/").free / 2**30
        out.append(_check("disk", free >= 2, f"{free:.1f} GiB free under {root}",
                          "free at least 2 GiB (the image is about 240 MB; a build needs about 1 GiB)"))
    except OSError as e:
        out.append(_check("disk", False, f"cannot read {root}: {e}", required=False))
    return out


def versions() -> dict[str, Any]:
    from testbed.runtime import images as img

    present = False
    try:
        from testbed.runtime import docker as rt

        present = img.present(rt.connect())
    except Exception:  # no engine: the image cannot be looked at, which version reports as absent
        present = False
    return {"package": testbed.__version__, "image": img.reference(), "imagePresent": present,
            "python": platform.python_version()}
