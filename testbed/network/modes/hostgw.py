"""host-gw, as Flannel's host-gw backend: no encapsulation; each node routes every other node's pod range
through that node's underlay address. Needs the nodes on one L2 segment, which the fabric bridge is."""

from __future__ import annotations

from testbed import netns
from testbed.actions import Change, Context
from testbed.network.registry import NetworkMode, register


@register
class HostGw(NetworkMode):
    name = "host-gw"
    title = "host-gw routes"

    def install(self, ctx: Context) -> Change:
        change = Change()
        for node in ctx.plan.nodes:
            wanted: dict[str, dict[str, object]] = {}
            for peer in ctx.plan.nodes:
                if peer is node:
                    continue
                wanted[peer.cidr4] = {"gateway": peer.underlay_ip}
                if peer.cidr6 and peer.underlay_ip6:
                    wanted[peer.cidr6] = {"gateway": peer.underlay_ip6}
            with netns.ipr(ctx.netns(node.name)) as nd:
                made, removed = netns.sync_routes(nd, netns.PROTO_HOST_GW, wanted)
            change += Change(changed=made, removed=removed)
        return change

    def uninstall(self, ctx: Context) -> Change:
        removed = 0
        for node in ctx.plan.nodes:
            with netns.ipr(ctx.netns(node.name)) as nd:
                removed += netns.sync_routes(nd, netns.PROTO_HOST_GW, {})[1]
        return Change(removed=removed)
