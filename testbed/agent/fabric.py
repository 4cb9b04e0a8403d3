"""The fabric machine's work: the lab's segment bridges live in its own network namespace, and each machine's
link to a segment is a veth between that namespace and the machine's.

The fabric container shares the host's PID namespace (and nothing else of the host), so it opens a machine's
namespace by the PID the engine reports for it. That is the whole of the host-side work a lab needs, done by a
container the engine starts: the command line makes nothing on the host itself, so the same code serves an engine
on another machine."""

from __future__ import annotations

import os
from typing import Any

from testbed.agent import nsutil
from testbed.agent.links import one, sync_addresses


def _bridge(fab: Any, name: str, mtu: int) -> int:
    br = one(fab, name)
    if br is None:
        fab.link("add", ifname=name, kind="bridge", mtu=mtu)
        br = one(fab, name)
    fab.link("set", index=br, mtu=mtu, state="up")
    return int(br)


def wire(bridge: str, mtu: int, ports: list[dict[str, Any]]) -> dict[str, int]:
    """Each port's veth exists (re-made if the machine was recreated: its old end here is then stale), is on the
    bridge, up, with exactly its addresses and its MAC (so a recreated machine's peers' ARP entries stay right)."""
    from testbed.agent.iproute import IPRoute

    added = 0
    with IPRoute() as fab:
        fab.link("set", index=1, state="up")
        br = _bridge(fab, bridge, mtu)
        for port in ports:
            path = f"/proc/{port['pid']}/ns/net"
            with nsutil.entered(path):
                nd = IPRoute()
            with nd:
                if one(nd, port["ifname"]) is None:
                    stale = one(fab, port["segment_if"])
                    if stale is not None:
                        fab.link("del", index=stale)
                    fd = os.open(path, os.O_RDONLY)
                    try:
                        fab.link("add", ifname=port["segment_if"], kind="veth", mtu=mtu,
                                 peer={"ifname": port["ifname"], "net_ns_fd": fd, "mtu": mtu,
                                       "address": port["mac"]})
                    finally:
                        os.close(fd)
                    added += 1
                fab.link("set", index=one(fab, port["segment_if"]), master=br, state="up")
                idx = one(nd, port["ifname"])
                nd.link("set", index=1, state="up")
                sync_addresses(nd, idx, [(a, p) for a, p in port["addresses"]])
                nd.link("set", index=idx, mtu=mtu, address=port["mac"], state="up")
    return {"added": added}
