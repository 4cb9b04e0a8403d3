"""The underlay: a Linux bridge in a lab-owned netns on the host, with a veth into each node (its eth0).

Not a Docker network: on the host, Docker's isolation rules drop forwarded packets whose addresses are outside a
Docker network's subnet, which would drop pod IPs on the wire in routed modes. This namespace has no rules.
Nothing is left in the host's own namespace: deleting the lab netns deletes the bridge and every veth.
"""

from __future__ import annotations

import contextlib
import hashlib
import os

from testbed import netns
from testbed.actions import Context
from testbed.agent import nsutil
from testbed.agent.macs import ip_mac

BRIDGE = "fabric"
NODE_IF = "eth0"
NETNS_PREFIX = "testbed-"


def ns_name(lab: str) -> str:
    return NETNS_PREFIX + lab


def fabric_if(node: str) -> str:
    """The fabric's end of a node's link: named after the node, within the 15-byte limit."""
    name = f"ul-{node}"
    return name if len(name) <= 15 else "ul-" + hashlib.sha1(node.encode()).hexdigest()[:12]


class Underlay:
    title = "Wiring the underlay"

    def run(self, ctx: Context) -> None:
        mtu = ctx.plan.topology.networking.mtu
        prefix = ctx.plan.underlay.prefixlen
        path = netns.ensure_named(ns_name(ctx.lab))
        with netns.ipr(path) as fab:
            fab.link("set", index=1, state="up")
            br = netns.one(fab, BRIDGE)
            if br is None:
                fab.link("add", ifname=BRIDGE, kind="bridge", mtu=mtu)
                br = netns.one(fab, BRIDGE)
            fab.link("set", index=br, mtu=mtu, state="up")
            for node in ctx.plan.nodes:
                node_ns = netns.node_path(ctx.pid(node.name))
                # a restarted node's link comes back with the same MAC, so its peers' ARP entries stay right
                mac = ip_mac(node.underlay_ip)
                with netns.ipr(node_ns) as nd:
                    if netns.one(nd, NODE_IF) is None:
                        stale = netns.one(fab, fabric_if(node.name))
                        if stale is not None:  # the node was recreated: its old peer is gone
                            fab.link("del", index=stale)
                        fd = os.open(node_ns, os.O_RDONLY)
                        try:
                            fab.link("add", ifname=fabric_if(node.name), kind="veth", mtu=mtu,
                                     peer={"ifname": NODE_IF, "net_ns_fd": fd, "mtu": mtu, "address": mac})
                        finally:
                            os.close(fd)
                    fab.link("set", index=netns.one(fab, fabric_if(node.name)), master=br, state="up")
                    idx = netns.one(nd, NODE_IF)
                    nd.link("set", index=1, state="up")
                    netns.sync_addresses(nd, idx, [(node.underlay_ip, prefix)])
                    nd.link("set", index=idx, mtu=mtu, address=mac, state="up")


def remove(lab: str) -> bool:
    path = os.path.join(netns.HOST_NETNS_DIR, ns_name(lab))
    if not os.path.exists(path):
        return False
    with contextlib.suppress(OSError):
        nsutil.remove_named(path)
    return True


def lab_names() -> set[str]:
    if not os.path.isdir(netns.HOST_NETNS_DIR):
        return set()
    return {n[len(NETNS_PREFIX):] for n in os.listdir(netns.HOST_NETNS_DIR) if n.startswith(NETNS_PREFIX)}
