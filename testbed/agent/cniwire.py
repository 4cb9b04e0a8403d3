"""Pods wired through CNI plugins, when the lab's topology says so (cni: reference, or a user's conflist): the
runtime (agent/cni.py) does ADD on a pod's new netns and DEL before it goes, with the capability arguments the
kubelet derives from the pod (hostPort mappings, bandwidth annotations, the IPs testbed planned, asked through
the `ips` capability where the conflist declares it). The pod's addresses are read from the result; a plugin's
error leaves the pod unwired, not ready, with the plugin's message."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from testbed.agent import nsutil
from testbed.agent.cni import Attachment, CniError, Runtime, addresses
from testbed.agent.iproute import IPRoute

NETNS_DIR = "/run/netns"


def runtime(net: dict[str, Any], current: Runtime | None) -> Runtime | None:
    """The CNI runtime the node's network asks for (None: the built-in wiring)."""
    cni = net.get("cni")
    if not cni:
        return None
    if current is None or current.timeout != cni["timeout"]:
        return Runtime(timeout=cni["timeout"])
    return current


def capabilities(spec: dict[str, Any], net: dict[str, Any]) -> dict[str, Any]:
    """What the kubelet passes as runtimeConfig: port mappings from hostPorts, bandwidth from annotations, and
    the addresses testbed planned (for plugins that take the `ips` capability)."""
    out: dict[str, Any] = {}
    mappings = [{"hostPort": p["hostPort"], "containerPort": p["port"], "protocol": p["protocol"].lower()}
                for p in spec["ports"] if p.get("hostPort")]
    if mappings:
        out["portMappings"] = mappings
    if spec.get("bandwidth"):
        out["bandwidth"] = spec["bandwidth"]
    ips = [f"{spec['ipv4']}/{net['prefix4']}"] + ([f"{spec['ipv6']}/{net['prefix6']}"] if spec.get("ipv6") else [])
    out["ips"] = ips
    return out


def attachment(spec: dict[str, Any], net: dict[str, Any] | None = None) -> Attachment:
    return Attachment(spec["netns"], spec["namespace"], spec["name"],
                      capabilities=capabilities(spec, net) if net is not None else None)


def host_interface(result: dict[str, Any]) -> str | None:
    """The pod's interface on the node: of the result's interfaces outside the sandbox, the last (the bridge
    plugin lists its bridge first, then the veth)."""
    outside = [i.get("name") for i in result.get("interfaces", []) if not i.get("sandbox")]
    return outside[-1] if outside else None


def _loopback(path: str) -> None:
    """lo up in the new netns: the runtime's part, as containerd does it beside the network's plugins."""
    with nsutil.entered(path), IPRoute() as ipr:
        ipr.link("set", index=1, state="up")


async def add(cni: Runtime, pod: Any, net: dict[str, Any]) -> None:
    """The pod's netns made and ADD run on it; its spec's addresses become the result's."""
    spec = pod.spec
    path = os.path.join(NETNS_DIR, spec["netns"])
    nsutil.create_named(path)
    if spec.get("ipv6"):
        with nsutil.entered(path):
            nsutil.write_sysctl("net.ipv6.conf.all.disable_ipv6", 0)
    _loopback(path)
    att = attachment(spec, net)
    try:
        result = await cni.add(att)
        v4, v6 = addresses(result)
        if v4 is None:
            raise CniError("(result)", "ADD", 999, "the result holds no IPv4 address")
    except CniError as err:
        pod.wired, pod.errors = False, [str(err)]
        with contextlib.suppress(CniError, OSError):
            await cni.delete(att)  # a failed ADD is cleaned up with DEL, as the spec asks of runtimes
        return
    spec["ipv4"], spec["ipv6"] = v4, v6
    pod.host_if = host_interface(result)
    pod.result = result


async def delete(cni: Runtime, netns: str, spec: dict[str, Any] | None) -> str | None:
    """DEL for a pod about to go (its netns still there); the error, if the plugins refused."""
    if spec is None:  # known from the agent's registry only: the ids come from the netns name
        namespace, _, name = netns.partition("_")
        spec = {"netns": netns, "namespace": namespace, "name": name}
    try:
        await cni.delete(attachment(spec))
    except (CniError, OSError) as err:
        return str(err)
    return None


async def check(cni: Runtime, spec: dict[str, Any]) -> str | None:
    try:
        await cni.check(attachment(spec))
    except (CniError, OSError) as err:
        return str(err)
    return None
