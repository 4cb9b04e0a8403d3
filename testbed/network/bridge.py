"""Each node's pod bridge, cni0, holding the pods' gateway addresses (as the bridge CNI plugin sets it up)."""

from __future__ import annotations

from ipaddress import ip_network

from testbed.actions import Context, each
from testbed.agent.macs import ip_mac
from testbed.plan.cluster import NodePlan

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

        def one(node: NodePlan) -> None:
            wanted = [(node.gateway4, ip_network(node.cidr4).prefixlen)]
            if node.gateway6 and node.cidr6:
                wanted.append((node.gateway6, ip_network(node.cidr6).prefixlen))
            ctx.netops(node.name, "bridge", name=BRIDGE, mtu=mtu, mac=bridge_mac(node.gateway4), addresses=wanted)

        each(one, ctx.plan.nodes)
