"""Each node's pod bridge, cni0, holding the pods' gateway addresses (as the bridge CNI plugin sets it up)."""

from __future__ import annotations

from ipaddress import ip_network

from testbed import netns
from testbed.actions import Context
from testbed.agent.macs import ip_mac

BRIDGE = "cni0"


def bridge_mac(gateway4: str) -> str:
    """A fixed MAC: a bridge without one takes the lowest of its ports' MACs and changes it as pods come and
    go, leaving every pod with a stale gateway entry (the CNI bridge plugin had this bug too)."""
    return ip_mac(gateway4)


class Bridge:
    title = "Creating pod bridges"
    machines_only = True  # follows the topology alone: an apply of manifests skips it

    def run(self, ctx: Context) -> None:
        mtu = ctx.plan.pod_mtu
        for node in ctx.plan.nodes:
            with netns.ipr(ctx.netns(node.name)) as nd:
                idx = netns.one(nd, BRIDGE)
                mac = bridge_mac(node.gateway4)
                if idx is None:
                    nd.link("add", ifname=BRIDGE, kind="bridge", mtu=mtu, address=mac)
                    idx = netns.one(nd, BRIDGE)
                wanted = [(node.gateway4, ip_network(node.cidr4).prefixlen)]
                if node.gateway6 and node.cidr6:
                    wanted.append((node.gateway6, ip_network(node.cidr6).prefixlen))
                netns.sync_addresses(nd, idx, wanted)
                nd.link("set", index=idx, mtu=mtu, address=mac, state="up")
