"""The router: the lab's top-of-rack router, on the underlay (.1) and on the external segment (ext0). Nodes and
external hosts route through it by default; it has no route off the machine, so nothing leaves the lab.

It knows the pod ranges either from BGP (a mode that says `router_learns`) or from static routes set here, so
with `natOutgoing: false` external hosts can answer pods in every mode."""

from __future__ import annotations

from testbed import netns
from testbed.actions import Change, Context, each
from testbed.checks import HEAL, Finding, Observation, fail, ok
from testbed.network.registry import mode
from testbed.network.underlay import NODE_IF
from testbed.plan.cluster import Plan


def _defaults(gateway: str, gateway6: str | None) -> dict[str, dict[str, object]]:
    wanted: dict[str, dict[str, object]] = {"0.0.0.0/0": {"gateway": gateway}}
    if gateway6:
        wanted["::/0"] = {"gateway": gateway6}
    return wanted


def _static(plan: Plan) -> dict[str, str]:
    """The router's routes to the pod ranges, in modes where it does not learn them: range → next hop."""
    out = {}
    for node in plan.nodes:
        out[node.cidr4] = node.underlay_ip
        if node.cidr6 and node.underlay_ip6:
            out[node.cidr6] = node.underlay_ip6
    return out


class Router:
    name = "router"
    title = "Routing through the router"
    machines_only = True  # follows the nodes alone: an apply of manifests skips it

    def check(self, obs: Observation, deep: bool) -> list[Finding]:
        """Nodes route through the router by default; the router routes every node's pod range (static routes
        here; in a mode where it learns them, the mode's own check says so)."""
        plan, router = obs.plan, obs.plan.router
        if router is None:
            return []
        out = []
        states = obs.ask_all("inspect", [n.name for n in plan.nodes])
        for node in plan.nodes:
            routes = {r["dst"]: r for r in (states[node.name] or {}).get("routes", [])}
            if states[node.name] is not None and (routes.get("0.0.0.0/0") or {}).get("gateway") != router.underlay_ip:
                out.append(fail("default route", node.name, f"{node.name} has no default route via the router "
                                                            f"({router.underlay_ip})", hint=HEAL))
        if not mode(plan.topology.networking.network).router_learns(plan):
            have = {r["dst"]: r["gateway"] for r in (obs.call(router.name, "inspect") or {}).get("routes", [])}
            lacking = [f"{dst} via {via}" for dst, via in _static(plan).items() if have and have.get(dst) != via]
            out.append(fail("router routes", router.name, f"the router lacks {len(lacking)} pod range route(s)",
                            lacking, hint=HEAL) if lacking else
                       ok("router routes", router.name, "the router routes every node's pod range"))
        return out

    def run(self, ctx: Context) -> Change:
        plan, router = ctx.plan, ctx.plan.router
        change = Change()
        if router is None:
            return change
        defaults = _defaults(router.underlay_ip, router.underlay_ip6)
        for made, removed in each(lambda n: ctx.netops(n.name, "routes", proto=netns.PROTO_DEFAULT, wanted=defaults),
                                  plan.nodes):
            change += Change(changed=made, removed=removed)
        static: dict[str, dict[str, object]] = {}
        if not mode(plan.topology.networking.network).router_learns(plan):
            static = {dst: {"gateway": via} for dst, via in _static(plan).items()}
            # LoadBalancer pools are on-link, as MetalLB's L2 mode needs: the node holding an IP answers ARP
            static |= {str(pool): {"dev": NODE_IF} for pool in plan.topology.loadBalancer.pools}
        made, removed = ctx.netops(router.name, "routes", proto=netns.PROTO_ROUTER, wanted=static)
        return change + Change(changed=made, removed=removed)
