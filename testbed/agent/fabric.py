"""The fabric machine's work: the lab's segment bridges live in its own network namespace, and each machine's
link to a segment is a veth between that namespace and the machine's.

The fabric container shares the host's PID namespace (and nothing else of the host), so it opens a machine's
namespace by the PID the engine reports for it, and the host's network namespace by its own ancestors' (the
engine's shim), where the VXLAN device that stitches this host's fabric to the other hosts' is made. That is the
whole of the host-side work a lab needs, done by a container the engine starts: the command line makes nothing
on the host itself, so the same code serves an engine on another machine."""

from __future__ import annotations

import errno
import os
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_fixed

from testbed.agent import nsutil
from testbed.agent.links import one, sync_addresses, vxlan_is
from testbed.agent.nlmsg import ONE_QUEUE


def _bridge(fab: Any, name: str, mtu: int) -> int:
    br = one(fab, name)
    if br is None:
        fab.link("add", ifname=name, kind="bridge", mtu=mtu)
        br = one(fab, name)
    fab.link("set", index=br, mtu=mtu, state="up")
    return int(br)


def host_netns() -> str:
    """The host's network namespace: that of the nearest ancestor outside this container's (the engine's shim,
    which runs in the host's network, whichever PID namespace the engine has)."""
    pid = nsutil.ancestor_outside("net")
    if pid is None:
        raise OSError("no ancestor of the fabric's agent is in the host's network namespace (is its PID namespace "
                      "the host's?)")
    return f"/proc/{pid}/ns/net"


ZERO = "00:00:00:00:00:00"


def _in_use(err: BaseException) -> bool:
    return getattr(err, "code", None) == errno.EEXIST


def _stitch(fab: Any, br: int, mtu: int, spec: dict[str, Any]) -> int:
    """The VXLAN device that joins this fabric to the other hosts': made by a netlink socket in the host's namespace
    (its UDP socket lives there, on the hosts' network) straight into this one, on the bridge; every peer host gets
    an all-zero FDB entry (head-end replication of broadcasts), and MACs are learnt. 1 if made now."""
    from testbed.agent.iproute import IPRoute

    name = spec["name"]
    idx = one(fab, name)
    if idx is not None and not vxlan_is(fab, idx, spec["vni"], spec["port"], spec["local"]):
        fab.link("del", index=idx)
        idx = None
    made = idx is None
    if made:
        own = os.open("/proc/self/ns/net", os.O_RDONLY)
        try:
            with nsutil.entered(host_netns()):
                host = IPRoute()
            with host:
                # the lab's last fabric here (a `down`, then `up`) may still hold the VNI on this port: the kernel
                # tears an old namespace down in the background, and then its device is gone
                for attempt in Retrying(retry=retry_if_exception(_in_use), stop=stop_after_delay(10),
                                        wait=wait_fixed(0.1), reraise=True):
                    with attempt:
                        host.link("add", ifname=name, kind="vxlan", vxlan_id=spec["vni"], vxlan_port=spec["port"],
                                  vxlan_local=spec["local"], vxlan_learning=1, mtu=mtu, net_ns_fd=own)
        finally:
            os.close(own)
        idx = one(fab, name)
    fab.link("set", index=idx, mtu=mtu, master=br, state="up")
    have = {f.get_attr("NDA_DST") for f in fab.fdb("dump", ifindex=idx) if f.get_attr("NDA_LLADDR") == ZERO}
    for peer in set(spec["peers"]) - have:
        fab.fdb("append", ifindex=idx, lladdr=ZERO, dst=peer)
    for gone in have - set(spec["peers"]) - {None}:
        fab.fdb("del", ifindex=idx, lladdr=ZERO, dst=gone)
    return int(made)


def wire(bridge: str, mtu: int, ports: list[dict[str, Any]], stitch: dict[str, Any] | None = None
         ) -> dict[str, int]:
    """Each port's veth exists (re-made if the machine was recreated: its old end here is then stale), is on the
    bridge, up, with exactly its addresses and its MAC (so a recreated machine's peers' ARP entries stay right);
    with stitch, the bridge is joined to the other hosts' fabrics."""
    from testbed.agent.iproute import IPRoute

    added = 0
    with IPRoute() as fab:
        fab.link("set", index=1, state="up")
        br = _bridge(fab, bridge, mtu)
        if stitch is not None:
            added += _stitch(fab, br, mtu, stitch)
        for port in ports:
            path = f"/proc/{port['pid']}/ns/net"
            with nsutil.entered(path):
                nd = IPRoute()
            with nd:
                mine, theirs = one(fab, port["segment_if"]), one(nd, port["ifname"])
                if theirs is not None and mine is None:
                    # its peer is in a fabric namespace that is gone (this container restarted; the kernel tears an
                    # old namespace down in the background, so the machine's end may outlive it for a while)
                    nd.link("del", index=theirs)
                    theirs = None
                if theirs is None:
                    if mine is not None:  # the machine was recreated: its old end here is stale
                        fab.link("del", index=mine)
                    fd = os.open(path, os.O_RDONLY)
                    try:
                        fab.link("add", ifname=port["segment_if"], kind="veth", mtu=mtu, **ONE_QUEUE,
                                 peer={"ifname": port["ifname"], "net_ns_fd": fd, "mtu": mtu,
                                       "address": port["mac"], **ONE_QUEUE})
                    finally:
                        os.close(fd)
                    added += 1
                fab.link("set", index=one(fab, port["segment_if"]), master=br, state="up")
                idx = one(nd, port["ifname"])
                nd.link("set", index=1, state="up")
                sync_addresses(nd, idx, [(a, p) for a, p in port["addresses"]])
                nd.link("set", index=idx, mtu=mtu, address=port["mac"], state="up")
    return {"added": added}
