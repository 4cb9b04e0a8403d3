"""Whether a node's pods are wired as they were made: CNI CHECK for pods wired through plugins; the kernel's
view of eth0 (its addresses, its default route, its veth) for the built-in wiring. `up` rebuilds the pods this
finds broken; `testbed cni check` and `diagnose` report them."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from testbed.agent import cniwire, netstate
from testbed.agent.cni import known_bug

NETNS_DIR = "/run/netns"


async def broken(mgr: Any, names: list[str]) -> list[str]:
    """Of these pods, the ones whose network is not as it was made: CHECK fails (through CNI), or eth0
    lacks an address or the default route (built-in)."""
    out = []
    for name in names:
        pod = mgr.pods.get(name)
        if pod is None or not pod.wired:
            continue
        if mgr.cni is not None:
            error = await cniwire.check(mgr.cni, pod.spec)
            if error and not known_bug(error):
                out.append(name)
            continue
        try:
            got = netstate.pod(os.path.join(NETNS_DIR, name), mgr.host_veth(name), mgr.ipr)
        except OSError:
            out.append(name)
            continue
        have = {a["address"] for a in got["addresses"] if a["dev"] == "eth0"}
        wanted = {ip for ip in (pod.spec["ipv4"], pod.spec.get("ipv6")) if ip}
        defaults = {r["dst"] for r in got["routes"] if r["dev"] == "eth0"}
        if not wanted <= have or "0.0.0.0/0" not in defaults or got["veth"] is None:
            out.append(name)
    return out


async def cni_check(mgr: Any) -> dict[str, str | None]:
    """CHECK of each pod wired through CNI (none with the built-in wiring): its error, or None."""
    if mgr.cni is None:
        return {}
    out: dict[str, str | None] = {}
    with contextlib.suppress(Exception):  # STATUS, of plugins that speak 1.1.0: is the network ready at all
        for why in await mgr.cni.status():
            out["(network)"] = why
    for name, pod in sorted(mgr.pods.items()):
        out[name] = pod.errors[0] if not pod.wired else await cniwire.check(mgr.cni, pod.spec)
    return out
