"""The node agent as a CNI runtime, as the spec (1.0.0, 1.1.0) and libcni have it: the network is the first
conflist in /etc/cni/net.d in lexical order; ADD runs its plugins in order, each given the previous one's result
(`prevResult`), DEL and CHECK in reverse with the cached result; each plugin gets the spec's environment
(CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_PATH, and CNI_ARGS as the kubelet sets them) and, in
`runtimeConfig`, the capability arguments it declares. Results are cached as libcni caches them
(/var/lib/cni/results, kind cniCacheV1), and handed to DEL and CHECK. GC and STATUS are asked of plugins whose
VERSION says they speak 1.1.0. A plugin that runs past the timeout is killed and reported; a plugin's error (the
spec's code, msg and details) is raised as CniError."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import uuid
from dataclasses import dataclass
from typing import Any

CONF_DIR = "/etc/cni/net.d"
CACHE_DIR = "/var/lib/cni/results"
PATH = ["/run/testbed/cni/bin", "/opt/cni/bin", "/usr/lib/cni"]
CONF_EXT = (".conf", ".conflist", ".json")
ORDERED = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")  # {{podCIDR}}, {{podCIDRv6}}, {{nodeName}} in a conflist


# CHECK failures that are the reference plugins' own bugs (containernetworking-plugins 1.1.1, Debian 12), not
# the pod's: they are reported as such, and neither fail the pod nor have `up` rebuild it
KNOWN_BUGS = {"could not check ipv6 dnat": "portmap 1.1.1 checks IPv6 chains of an IPv4-only pod (fixed in 1.2)"}


def known_bug(error: str) -> str | None:
    return next((why for text, why in KNOWN_BUGS.items() if text in error), None)


def fill(text: str, values: dict[str, Any]) -> str:
    """A conflist for one node, its placeholders filled in."""
    return PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), "")), text)


class CniError(Exception):
    """A plugin's error (well_formed: it printed the spec's JSON error), or the runtime's about running it."""

    def __init__(self, plugin: str, command: str, code: int, msg: str, details: str = "",
                 well_formed: bool = False) -> None:
        super().__init__(f"CNI {command} failed in plugin {plugin}: {msg}" + (f" ({details})" if details else "")
                         + f" [code {code}]")
        self.plugin, self.command, self.code, self.msg, self.details = plugin, command, code, msg, details
        self.well_formed = well_formed


def container_id(netns: str) -> str:
    """A stable id for a pod's sandbox (the kubelet's is its pause container's)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"testbed:{netns}").hex * 2


def pod_uid(namespace: str, name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"testbed:pod:{namespace}/{name}"))


def at_least(version: str, floor: str) -> bool:
    return version in ORDERED and ORDERED.index(version) >= ORDERED.index(floor)


def load_network(conf_dir: str = CONF_DIR) -> tuple[dict[str, Any], bytes]:
    """The network: the first file in lexical order, as containerd picks it (a single-plugin .conf becomes a
    list of one)."""
    names = sorted(n for n in os.listdir(conf_dir) if n.endswith(CONF_EXT)) if os.path.isdir(conf_dir) else []
    if not names:
        raise CniError("(none)", "ADD", 1, f"no network configuration in {conf_dir}")
    with open(os.path.join(conf_dir, names[0]), "rb") as f:
        raw = f.read()
    conf = json.loads(raw)
    if "plugins" not in conf:
        conf = {"cniVersion": conf.get("cniVersion"), "name": conf.get("name"), "plugins": [conf]}
    return conf, raw


@dataclass
class Attachment:
    """One pod's attachment to the network: what the runtime passes to every plugin."""

    netns: str  # its name in /run/netns
    namespace: str
    name: str
    ifname: str = "eth0"
    capabilities: dict[str, Any] | None = None

    @property
    def container(self) -> str:
        return container_id(self.netns)

    def args(self) -> list[tuple[str, str]]:
        return [("IgnoreUnknown", "1"), ("K8S_POD_NAMESPACE", self.namespace), ("K8S_POD_NAME", self.name),
                ("K8S_POD_INFRA_CONTAINER_ID", self.container), ("K8S_POD_UID", pod_uid(self.namespace, self.name))]


class Runtime:
    def __init__(self, timeout: float = 10.0, path: list[str] | None = None, conf_dir: str = CONF_DIR,
                 cache_dir: str = CACHE_DIR) -> None:
        self.timeout, self.path, self.conf_dir, self.cache_dir = timeout, path or PATH, conf_dir, cache_dir

    def _binary(self, kind: str) -> str:
        for folder in self.path:
            candidate = os.path.join(folder, kind)
            if os.access(candidate, os.X_OK):
                return candidate
        raise CniError(kind, "exec", 1, f"no plugin {kind!r} in {':'.join(self.path)}")

    async def exec(self, plugin: dict[str, Any], command: str, att: Attachment | None, stdin: dict[str, Any],
                   extra_env: dict[str, str] | None = None) -> dict[str, Any]:
        """One plugin call; its result (or {} when it prints nothing, as DEL may)."""
        kind = plugin["type"]
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CNI_COMMAND": command,
               "CNI_PATH": ":".join(self.path), **(extra_env or {})}
        if att is not None:
            env |= {"CNI_CONTAINERID": att.container, "CNI_IFNAME": att.ifname,
                    "CNI_ARGS": ";".join(f"{k}={v}" for k, v in att.args())}
            netns = f"/run/netns/{att.netns}"
            if os.path.exists(netns):  # DEL of a pod whose netns is gone has none (the spec allows it)
                env["CNI_NETNS"] = netns
        proc = await asyncio.create_subprocess_exec(self._binary(kind), stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE, env=env)
        try:
            out, err = await asyncio.wait_for(proc.communicate(json.dumps(stdin).encode()), self.timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise CniError(kind, command, 999, f"timed out after {self.timeout:g} s and was killed") from None
        text = out.decode(errors="replace").strip()
        if proc.returncode != 0:
            try:
                error = json.loads(text)
                code, msg = error["code"], error["msg"]
            except (ValueError, KeyError, TypeError):
                raise CniError(kind, command, 999, f"exited {proc.returncode} without a JSON error (code and "
                                                   f"msg): {(text or err.decode(errors='replace')).strip()[-300:]}"
                               ) from None
            raise CniError(kind, command, int(code) if isinstance(code, int) else 999, str(msg),
                           str(error.get("details", "")), well_formed=isinstance(code, int))
        if not text:
            return {}
        try:
            return json.loads(text)
        except ValueError:
            raise CniError(kind, command, 999, f"printed a result that is not JSON: {text[:200]}") from None

    @staticmethod
    def _config(plugin: dict[str, Any], net: dict[str, Any], att: Attachment, previous: dict[str, Any] | None) \
            -> dict[str, Any]:
        """A plugin's stdin: its own entry, the network's name and version, the previous result, and the
        capability arguments it declares."""
        conf = {**plugin, "name": net["name"], "cniVersion": net["cniVersion"]}
        if previous is not None:
            conf["prevResult"] = previous
        wanted = {k for k, on in (plugin.get("capabilities") or {}).items() if on}
        runtime = {k: v for k, v in (att.capabilities or {}).items() if k in wanted and v}
        if runtime:
            conf["runtimeConfig"] = runtime
        return conf

    def _cache_path(self, net: dict[str, Any], att: Attachment) -> str:
        return os.path.join(self.cache_dir, f"{net['name']}-{att.container}-{att.ifname}")

    def cached(self, att: Attachment) -> dict[str, Any] | None:
        with contextlib.suppress(OSError, ValueError, CniError):
            net, _ = load_network(self.conf_dir)
            with open(self._cache_path(net, att)) as f:
                return json.load(f)
        return None

    async def add(self, att: Attachment) -> dict[str, Any]:
        net, raw = load_network(self.conf_dir)
        result: dict[str, Any] | None = None
        for plugin in net["plugins"]:
            result = await self.exec(plugin, "ADD", att, self._config(plugin, net, att, result)) or result
        os.makedirs(self.cache_dir, exist_ok=True)
        entry = {"kind": "cniCacheV1", "containerId": att.container, "config": base64.b64encode(raw).decode(),
                 "ifName": att.ifname, "networkName": net["name"], "netns": f"/run/netns/{att.netns}",
                 "cniArgs": [list(a) for a in att.args()], "capabilityArgs": att.capabilities or {},
                 "result": result or {}}
        with open(self._cache_path(net, att), "w") as f:
            json.dump(entry, f)
        return result or {}

    async def delete(self, att: Attachment) -> None:
        """Every plugin in reverse, with the cached result; the cache entry goes once all succeeded."""
        net, _ = load_network(self.conf_dir)
        cached = self.cached(att)
        previous = cached["result"] if cached and cached.get("result") else None
        if cached:
            att.capabilities = cached.get("capabilityArgs") or att.capabilities
        for plugin in reversed(net["plugins"]):
            await self.exec(plugin, "DEL", att, self._config(plugin, net, att, previous))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._cache_path(net, att))

    async def check(self, att: Attachment) -> None:
        net, _ = load_network(self.conf_dir)
        if not at_least(net["cniVersion"], "0.4.0"):
            return  # CHECK came with 0.4.0
        cached = self.cached(att)
        if cached is None:
            raise CniError("(runtime)", "CHECK", 999, "no cached result for this attachment")
        # the capability arguments ADD had, as libcni hands them to CHECK; a declared bandwidth capability
        # always gets one (zero: no limit), since the reference bandwidth plugin (1.1) reads it unconditionally
        att.capabilities = {"bandwidth": {"ingressRate": 0, "ingressBurst": 0, "egressRate": 0, "egressBurst": 0},
                            **(cached.get("capabilityArgs") or {})}
        for plugin in net["plugins"]:
            conf = self._config(plugin, net, att, cached["result"])
            if (plugin.get("capabilities") or {}).get("bandwidth"):
                conf.setdefault("runtimeConfig", {})["bandwidth"] = att.capabilities["bandwidth"]
            await self.exec(plugin, "CHECK", att, conf)

    async def versions(self) -> dict[str, list[str]]:
        net, _ = load_network(self.conf_dir)
        out = {}
        for plugin in net["plugins"]:
            got = await self.exec(plugin, "VERSION", None, {"cniVersion": net["cniVersion"]})
            out[plugin["type"]] = got.get("supportedVersions", [])
        return out

    async def gc(self, valid: list[Attachment]) -> list[str]:
        """GC, with the attachments that must stay, for plugins that speak 1.1.0; which plugins were asked."""
        net, _ = load_network(self.conf_dir)
        if not at_least(net["cniVersion"], "1.1.0"):
            return []
        supported = await self.versions()
        asked = []
        attachments = [{"containerID": a.container, "ifname": a.ifname} for a in valid]
        for plugin in net["plugins"]:
            if "1.1.0" in supported.get(plugin["type"], []):
                conf = {**plugin, "name": net["name"], "cniVersion": net["cniVersion"],
                        "cni.dev/valid-attachments": attachments}
                await self.exec(plugin, "GC", None, conf)
                asked.append(plugin["type"])
        return asked

    async def status(self) -> list[str]:
        """STATUS of plugins that speak 1.1.0: the ones not ready, with why."""
        net, _ = load_network(self.conf_dir)
        if not at_least(net["cniVersion"], "1.1.0"):
            return []
        supported = await self.versions()
        bad = []
        for plugin in net["plugins"]:
            if "1.1.0" in supported.get(plugin["type"], []):
                try:
                    await self.exec(plugin, "STATUS", None, {**plugin, "name": net["name"],
                                                             "cniVersion": net["cniVersion"]})
                except CniError as err:
                    bad.append(str(err))
        return bad


def addresses(result: dict[str, Any]) -> tuple[str | None, str | None]:
    """The first IPv4 and IPv6 address of a result (1.0: `ips`; 0.2: `ip4`/`ip6`), without prefix."""
    v4 = v6 = None
    for entry in result.get("ips", []):
        ip = entry.get("address", "").split("/")[0]
        if ":" in ip:
            v6 = v6 or ip
        elif ip:
            v4 = v4 or ip
    v4 = v4 or (result.get("ip4") or {}).get("ip", "").split("/")[0] or None
    v6 = v6 or (result.get("ip6") or {}).get("ip", "").split("/")[0] or None
    return v4, v6
