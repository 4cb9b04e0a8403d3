"""host-gw, as Flannel's host-gw backend: no encapsulation; each node routes every other node's pod range
through that node's underlay address. Needs the nodes on one L2 segment, which the fabric bridge is."""

from __future__ import annotations

from testbed import netns
from testbed.actions import Change, Context, each
from testbed.checks import HEAL, Finding, Observation, fail, ok
from testbed.network.registry import NetworkMode, register
from testbed.plan.cluster import NodePlan, Plan


def _wanted(plan: Plan, node: NodePlan) -> dict[str, str]:
    """Every other node's pod ranges, via that node's underlay address."""
    out = {}
    for peer in plan.nodes:
        if peer is not node:
            out[peer.cidr4] = peer.underlay_ip
            if peer.cidr6 and peer.underlay_ip6:
                out[peer.cidr6] = peer.underlay_ip6
    return out


@register
class HostGw(NetworkMode):
    name = "host-gw"
    title = "host-gw routes"

    def install(self, ctx: Context) -> Change:
        change = Change()
        for node in ctx.plan.nodes:
            wanted: dict[str, dict[str, object]] = {dst: {"gateway": via}
                                                    for dst, via in _wanted(ctx.plan, node).items()}
            made, removed = ctx.netops(node.name, "routes", proto=netns.PROTO_HOST_GW, wanted=wanted)
            change += Change(changed=made, removed=removed)
        return change

    def check(self, obs: Observation, deep: bool) -> list[Finding]:
        states = obs.ask_all("inspect", [n.name for n in obs.plan.nodes])
        out = []
        for node in obs.plan.nodes:
            if (state := states[node.name]) is None:
                continue
            have = {r["dst"]: r["gateway"] for r in state["routes"] if r["proto"] == netns.PROTO_HOST_GW}
            lacking = [f"no route to {dst} via {via}" for dst, via in _wanted(obs.plan, node).items()
                       if have.get(dst) != via]
            out.append(fail("host-gw routes", node.name, f"{node.name}: {lacking[0]}", lacking, HEAL) if lacking
                       else ok("host-gw routes", node.name, f"{node.name}: a route to every other node's pods"))
        return out

    def uninstall(self, ctx: Context) -> Change:
        return Change(removed=sum(each(lambda n: ctx.netops(n.name, "routes", proto=netns.PROTO_HOST_GW,
                                                            wanted={})[1], ctx.plan.nodes)))
