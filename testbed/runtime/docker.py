"""The only module that talks to the Docker engine (through the SDK). Everything it makes carries the lab's
label, so `down` finds all of it even when the state file is lost."""

from __future__ import annotations

import compileall
import contextlib
import functools
import importlib.util
import io
import os
import secrets
import signal
import tarfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

import testbed
from testbed.errors import EnvironmentProblem
from testbed.runtime import engines
from testbed.runtime.engines import Endpoint

if TYPE_CHECKING:  # the SDK (with requests and urllib3) costs a command ~0.15 s to import: only when it is used
    import docker
    from docker.models.containers import Container
LAB = "testbed.lab"
ROLE = "testbed.role"
NODE = "testbed.node"
HALT_WAIT = 120  # seconds a killed machine may take to end before it is removed by force anyway
ROUNDS = 3  # listings a removal makes at most, while containers still appear

# privileged mode fails on hosts whose bounding set lacks CAP_SYS_RESOURCE; explicit grants work everywhere and
# say what a node needs
SECURITY = {
    "cap_add": ["ALL"],
    "cap_drop": ["SYS_RESOURCE"],
    "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
}
# `--security-opt systempaths=unconfined` is a CLI spelling; the API takes empty masked and read-only path
# lists, which leave /proc/sys writable (the agent sets per-pod sysctls there)
UNMASKED = {"MaskedPaths": [], "ReadonlyPaths": []}
# containerd's runc shim serves every container whose spec names the same group (as Kubernetes' CRI groups a pod's
# containers): a few shims for a lab's machines instead of one each, about 2.8 MiB a machine. Four, not one: a
# shim creates its containers one at a time, and a 200-node `up` took 2-3 s longer with one (four cost 7 MiB more)
SHIM_GROUP = "io.containerd.runc.v2.group"
SHIM_SHARDS = 4


def engine_errors() -> tuple[type[Exception], ...]:
    """What the engine raises: the command line names them, without the SDK."""
    from docker.errors import DockerException

    return (DockerException,)


def connect(endpoint: Endpoint | None = None) -> docker.DockerClient:
    """The engine at endpoint (default: as the docker CLI picks it, engines.resolve)."""
    import docker
    from docker.errors import DockerException
    from docker.tls import TLSConfig

    ep = endpoint or engines.resolve()
    try:
        tls = TLSConfig(client_cert=(f"{ep.tls}/cert.pem", f"{ep.tls}/key.pem"), ca_cert=f"{ep.tls}/ca.pem",
                        verify=True) if ep.tls else None
        client = docker.DockerClient(base_url=ep.host, tls=tls, timeout=120)
        client.ping()
        return client
    except DockerException as err:
        local = "; `make up` installs and starts one" if ep.host == engines.LOCAL else ""
        raise EnvironmentProblem(f"no Docker engine is reachable at {ep.host} ({ep.source}): {err}{local}") \
            from None


def containers(client: docker.DockerClient, lab: str | None = None) -> list[Container]:
    label = f"{LAB}={lab}" if lab else LAB
    return client.containers.list(all=True, filters={"label": label}, ignore_removed=True)


def lab_names(client: docker.DockerClient) -> set[str]:
    names = {c.labels.get(LAB, "") for c in containers(client)}
    names |= {n.attrs.get("Labels", {}).get(LAB, "") for n in client.networks.list(filters={"label": LAB})}
    return names - {""}


_PYROUTE2 = str(Path(importlib.util.find_spec("pyroute2").origin or "").parent)  # type: ignore[union-attr]


@functools.cache
def _compiled() -> None:
    """The agent's modules as bytecode beside their sources, as pip leaves an installed package: every machine's
    agent would otherwise compile them as it starts (read-only mounts, and PYTHONDONTWRITEBYTECODE in the image),
    a tenth of a second of CPU and about 2 MiB of its memory each. Where this install cannot be written, they
    compile as before."""
    agent = Path(testbed.__file__).parent / "agent"
    with contextlib.suppress(OSError):
        compileall.compile_file(str(agent.parent / "__init__.py"), quiet=2)
        compileall.compile_dir(str(agent), quiet=2, maxlevels=0)


def agent_mounts(run_dir: Path) -> list[Any]:
    """The agent's code and its pyroute2, read-only from this install, and the node's run folder."""
    from docker.types import Mount

    _compiled()
    return [
        Mount("/opt/testbed/testbed", str(Path(testbed.__file__).parent), type="bind", read_only=True),
        Mount("/opt/testbed/lib/pyroute2", _PYROUTE2, type="bind", read_only=True),
        Mount("/run/testbed", str(run_dir), type="bind"),
    ]


@functools.cache
def code_archive() -> bytes:
    """The agent's code and its pyroute2 as a tar of /opt/testbed, for a machine on another host's engine (a local
    one has them bind-mounted read-only)."""
    _compiled()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for source, target in ((Path(testbed.__file__).parent, "opt/testbed/testbed"),
                               (Path(_PYROUTE2), "opt/testbed/lib/pyroute2")):
            tar.add(str(source), arcname=target)
    return buf.getvalue()


def run_node(client: docker.DockerClient, image: str, lab: str, node: str, name: str, run_dir: Path,
             dual_stack: bool, role: str = "node", local: bool = True) -> Container:
    """A machine's container, started. On another host's engine (not local), its code is copied in before it starts
    and its run folder is its own tmpfs: nothing of this machine's is bind-mounted there."""
    sysctls = {"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": "0"}
    if dual_stack:
        sysctls |= {"net.ipv6.conf.all.disable_ipv6": "0", "net.ipv6.conf.default.disable_ipv6": "0",
                    "net.ipv6.conf.all.forwarding": "1", "net.ipv6.conf.all.accept_dad": "0",
                    "net.ipv6.conf.default.accept_dad": "0"}
    run_dir.mkdir(parents=True, exist_ok=True)
    api = client.api
    # Docker's networks are not used at all: the project builds the underlay itself (see network/underlay)
    # per-pod files on tmpfs: creating them on the container's overlayfs costs a millisecond each
    tmpfs = {"/run/netns": "mode=755", "/etc/netns": "mode=755"}
    if not local:
        tmpfs["/run/testbed"] = "mode=755"
    group = f"{shim_group(lab, run_dir.parent)}-{shim_shard(node)}"
    # the group twice: Docker 24+ writes the annotation into the spec; for Docker 20.10 the launcher testbed's
    # host set-up puts on the engine's PATH reads it from the environment (scripts/engine/containerd-shim-runc-v2)
    environment = {"TESTBED_NODE": node, "TESTBED_LAB": lab, "TESTBED_ROLE": role, "TESTBED_SHIM_GROUP": group}
    # a node's agent is forked into it by its host's fabric (agent/zygote.py), sharing that process's memory: the
    # node's own init only holds it open
    command = ["tini", "-g", "--", "sleep", "infinity"] if role == "node" else None
    # the fabric wires the other machines by their PIDs on this host (agent/fabric.py): it shares the host's PID
    # namespace (nothing else of it), where tini is not PID 1 and so reaps as a subreaper
    # (and the engine starts it again if it dies: every machine's links hang on it, and the control plane re-wires
    # them when it sees the start)
    shared = {"pid_mode": "host", "restart_policy": {"Name": "always"}} if role == "fabric" else {}
    if shared:
        environment["TINI_SUBREAPER"] = "1"
    host_config = api.create_host_config(network_mode="none", mounts=agent_mounts(run_dir) if local else [],
                                         sysctls=sysctls,
                                         tmpfs=tmpfs, **shared, **SECURITY)
    host_config.update(UNMASKED)
    host_config["Annotations"] = {SHIM_GROUP: group}  # an engine before API 1.43 ignores the field
    # networking disabled, not just "none": the engine then gives the machine its own empty netns without a
    # libnetwork sandbox, whose teardown deadlocks Docker 20.10's daemon when many machines end at once (the
    # "none" network's lock against the controller's: moby/moby#46661, fixed after 20.10.24, Debian 12's)
    created = api.create_container(image, name=name, hostname=node, labels={LAB: lab, ROLE: role, NODE: node},
                                   environment=environment, host_config=host_config, command=command,
                                   network_disabled=True)
    if not local:
        api.put_archive(created["Id"], "/", code_archive())
    api.start(created["Id"])
    return client.containers.get(created["Id"])


def shim_shard(machine: str) -> int:
    """Which of its lab's SHIM_SHARDS shims serves a machine: by its name, the same whoever makes it."""
    return zlib.crc32(machine.encode()) % SHIM_SHARDS


def shim_group(lab: str, lab_run_dir: Path) -> str:
    """The lab's shim group, the same for every process that makes one of its machines (a node the control plane
    makes again joins its lab's shim): kept in the lab's run folder, which `down` removes, so a lab made again
    never joins the shim of the one just removed, which may still be ending."""
    path = lab_run_dir / "shim-group"
    with contextlib.suppress(FileNotFoundError):
        return path.read_text()
    lab_run_dir.mkdir(parents=True, exist_ok=True)
    tmp = lab_run_dir / f".shim-group.{secrets.token_hex(4)}"
    tmp.write_text(f"testbed-{lab}-{secrets.token_hex(4)}")
    with contextlib.suppress(FileExistsError):  # another process or thread was first: its group is the lab's
        os.link(tmp, path)
    tmp.unlink()
    return path.read_text()


def pid(container: Container) -> int:
    container.reload()
    p = int(container.attrs["State"]["Pid"])
    if not p:
        raise EnvironmentProblem(f"container {container.name} is not running")
    return p


def get(client: docker.DockerClient, name: str) -> Container | None:
    from docker.errors import NotFound

    try:
        return client.containers.get(name)
    except NotFound:
        return None


def _halt(client: docker.DockerClient, found: list[Container]) -> set[str]:
    """Every running machine but the fabric killed at once, through its init's PID on this machine. Its pods'
    namespaces then end together, and the kernel frees them in a few batches: one at a time, each would walk
    every namespace still alive (their netns ids), which made `down` of 10,000 pods quadratic. A PID is used
    only while its process is in that container's cgroup (this process may not share the engine's PID
    namespace)."""
    from docker.errors import NotFound

    def pid(c: Container) -> int:
        with contextlib.suppress(NotFound, OSError, ValueError):
            p = int(client.api.inspect_container(c.id)["State"]["Pid"])
            if p and c.id in Path(f"/proc/{p}/cgroup").read_text():
                return p
        return 0

    running = [c for c in found if c.status == "running" and c.attrs["Labels"].get(ROLE) != "fabric"]
    with ThreadPoolExecutor(max_workers=16) as pool:
        pids = {c.id: p for c, p in zip(running, pool.map(pid, running), strict=True) if p}
    for p in pids.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    return set(pids)


def remove_lab(client: docker.DockerClient, lab: str, local: bool = True) -> int:
    from docker.errors import NotFound

    removed = 0
    # again until a listing finds none: an `up` killed mid-way may have left a create in the engine, which makes
    # its container after the first listing (seen in CI: a killed `up`'s external host outlived `down`)
    for _ in range(ROUNDS):
        # sparse: the listing alone, not an inspection of each container in turn (a second at 200 nodes)
        found = client.containers.list(all=True, filters={"label": f"{LAB}={lab}"}, sparse=True,
                                       ignore_removed=True)
        if not found:
            break
        _remove(client, found, local)
        removed += len(found)
        if local:
            _end_shims({c.id for c in found})
    for n in client.networks.list(filters={"label": f"{LAB}={lab}"}):
        with contextlib.suppress(NotFound):
            n.remove()
    return removed


def _end_shims(ids: set[str]) -> None:
    """A shared shim (SHIM_GROUP) that outlives its lab's machines, killed: it ends with its last container, but
    one was once seen to stay after a parallel test run, holding a few MiB for nothing. A shim's command line names
    the first container it served; every other container of its group was the lab's too, removed with it."""
    for pid in _shims_serving(ids):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@retry(retry=retry_if_result(bool), stop=stop_after_delay(1.0), wait=wait_fixed(0.1),
       retry_error_callback=lambda rs: rs.outcome.result())
def _shims_serving(ids: set[str]) -> list[int]:
    """The shims whose command line names one of ids, once they had a second to end by themselves."""
    return [pid for pid, args in processes_named("containerd-shim", "cmdline")
            if any(a.decode(errors="replace") in ids for a in args)]


def processes_named(prefix: str, field: str) -> list[tuple[int, list[bytes]]]:
    """The processes of this PID namespace whose name starts with prefix, each with a NUL-separated file of its
    /proc entry (cmdline, environ): the engine's own processes, where this machine runs the engine."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().startswith(prefix):
                out.append((int(pid), Path(f"/proc/{pid}/{field}").read_bytes().split(b"\0")))
    return out


def _remove(client: docker.DockerClient, found: list[Container], local: bool) -> None:
    from docker.errors import NotFound

    halted = _halt(client, found) if local else set()

    def remove(c: Container) -> None:
        with contextlib.suppress(NotFound):
            if c.id in halted:  # waited for first: the engine may see a killed machine end (its pods' namespaces
                # go with every other node's, in the kernel's queue) later than a forced removal waits for its exit,
                # and that removal then fails
                with contextlib.suppress(*engine_errors(), OSError):
                    client.api.wait(c.id, timeout=HALT_WAIT, condition="not-running")
            c.remove(force=True)

    # at once: each removal mostly waits on the engine. The fabric goes last: it reaps the nodes' agents
    # (agent/zygote.py), and a node's namespaces end only once its agent is reaped
    fabric = [c for c in found if c.attrs["Labels"].get(ROLE) == "fabric"]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(remove, [c for c in found if c not in fabric]))
        list(pool.map(remove, fabric))


def exec_in(container: Container, cmd: list[str], tty: bool = False) -> tuple[int, bytes, bytes]:
    result = container.exec_run(cmd, demux=True, tty=tty)
    out, err = result.output if isinstance(result.output, tuple) else (result.output, b"")
    return result.exit_code, out or b"", err or b""
