"""The router: the lab's top-of-rack router, on the underlay (.1) and on the external segment (ext0). Nodes and
external hosts route through it by default; it has no route off the machine, so nothing leaves the lab.

It knows the pod ranges either from BGP (a mode that says `router_learns`) or from static routes set here, so
with `natOutgoing: false` external hosts can answer pods in every mode."""

from __future__ import annotations

from testbed import netns
from testbed.actions import Change, Context
from testbed.network.registry import mode
from testbed.network.underlay import NODE_IF


def _defaults(gateway: str, gateway6: str | None) -> dict[str, dict[str, object]]:
    wanted: dict[str, dict[str, object]] = {"0.0.0.0/0": {"gateway": gateway}}
    if gateway6:
        wanted["::/0"] = {"gateway": gateway6}
    return wanted


class Router:
    title = "Routing through the router"

    def run(self, ctx: Context) -> Change:
        plan, router = ctx.plan, ctx.plan.router
        change = Change()
        if router is None:
            return change
        for node in plan.nodes:
            with netns.ipr(ctx.netns(node.name)) as nd:
                made, removed = netns.sync_routes(nd, netns.PROTO_DEFAULT,
                                                  _defaults(router.underlay_ip, router.underlay_ip6))
            change += Change(changed=made, removed=removed)
        static: dict[str, dict[str, object]] = {}
        with netns.ipr(ctx.netns(router.name)) as rd:
            if not mode(plan.topology.networking.network).router_learns(plan):
                for node in plan.nodes:
                    static[node.cidr4] = {"gateway": node.underlay_ip}
                    if node.cidr6 and node.underlay_ip6:
                        static[node.cidr6] = {"gateway": node.underlay_ip6}
                # LoadBalancer pools are on-link, as MetalLB's L2 mode needs: the node holding an IP answers ARP
                eth0 = netns.one(rd, NODE_IF)
                static |= {str(pool): {"oif": eth0} for pool in plan.topology.loadBalancer.pools}
            made, removed = netns.sync_routes(rd, netns.PROTO_ROUTER, static)
        return change + Change(changed=made, removed=removed)
