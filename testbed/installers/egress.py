"""Egress NAT (`networking.natOutgoing`, Calico's natOutgoing): pod traffic to anything outside the cluster's pod,
service and underlay ranges is masqueraded to the node's address as it leaves the node. One nftables table per
node, `inet testbed-egress`, rendered here and replaced atomically by the node's agent."""

from __future__ import annotations

import time

from testbed.actions import Change, Context, each
from testbed.checks import HEAL, Finding, Observation, compared, fail, ok
from testbed.installers import Installer, register, report
from testbed.model.topology import Topology
from testbed.plan.cluster import Plan
from testbed.policy.evaluate import decide
from testbed.runtime import agent, probing

FAMILY, TABLE = "inet", "testbed-egress"


def render(plan: Plan) -> str:
    """The same table on every node: the source is any pod (a moved pod's IP is outside its node's range)."""
    net = plan.topology.networking
    cluster4 = [str(net.podCIDR), str(net.serviceCIDR), str(plan.underlay)]
    lines = [f"table {FAMILY} {TABLE} {{",
             "  set cluster4 { type ipv4_addr; flags interval; elements = { " + ", ".join(cluster4) + " } }"]
    rules = [f"    ip saddr {net.podCIDR} ip daddr != @cluster4 masquerade"]
    if net.dualStack:
        cluster6 = [str(net.podCIDRv6), str(net.serviceCIDRv6)] + ([str(plan.underlay6)] if plan.underlay6 else [])
        lines.append("  set cluster6 { type ipv6_addr; flags interval; elements = { " + ", ".join(cluster6) + " } }")
        rules.append(f"    ip6 saddr {net.podCIDRv6} ip6 daddr != @cluster6 masquerade")
    lines += ["  chain postrouting {", "    type nat hook postrouting priority srcnat; policy accept;", *rules,
              "  }", "}"]
    return "\n".join(lines) + "\n"


@register
class Egress(Installer):
    name = "egress"
    title = "Egress NAT"

    def enabled(self, topo: Topology) -> bool:
        return topo.networking.natOutgoing

    def _apply(self, ctx: Context, text: str | None) -> Change:
        def one(node: str) -> bool:
            start = time.monotonic()
            answer = agent.call(ctx.run_dir(node), "rules", family=FAMILY, table=TABLE, text=text, verify=ctx.verify)
            return report(ctx, self.name, node, f"table {FAMILY} {TABLE}", answer, start)

        changed = sum(each(one, [n.name for n in ctx.plan.nodes]))
        return Change(changed=changed) if text else Change(removed=changed)

    def install(self, ctx: Context) -> Change:
        if ctx.unchanged(render):
            return Change()  # the nodes hold this table: nothing is sent
        return self._apply(ctx, render(ctx.plan))

    def uninstall(self, ctx: Context) -> Change:
        return self._apply(ctx, None)

    def check(self, obs: Observation, deep: bool) -> list[Finding]:
        """Deep: every node's table as the kernel holds it, and a pod on every node reaching the web host
        outside, which must see the node's address."""
        if not deep:
            return []
        plan, text = obs.plan, render(obs.plan)
        web = next((h for h in plan.externals if h.role == "web"), None)

        def one(node: str) -> list[Finding | None]:
            got = compared("egress NAT rules", node, f"table {FAMILY} {TABLE}",
                           obs.call(node, "compare", kind="nft", family=FAMILY, table=TABLE, text=text))
            # a pod the NetworkPolicies let out: the check is of the NAT, not of the policies
            pod = next((p for p in plan.pods_on(node) if web and decide(plan.policies, plan.namespaces, p, p.ipv4,
                                                                         None, web.ip, 80, "TCP").allowed), None)
            if web is None or pod is None or got is None:
                return [got]
            seen = probing.connect(plan, pod.key, web.ip, 80, timeout=2)
            source = (seen.get("client") or "").rsplit(":", 1)[0]
            mine = plan.node(node).underlay_ip
            if seen["result"] == "connected" and source == mine:
                return [got, ok("egress NAT", node, f"{pod.key} reaches {web.name} ({web.ip}), which sees {source}")]
            why = f"{seen['result']}" + (f", seen as {source}, not {mine}" if source else "")
            return [got, fail("egress NAT", node, f"{pod.key} on {node} → {web.name} ({web.ip}:80): {why}",
                              [seen["error"]] if seen.get("error") else [], HEAL)]

        return [f for found in each(one, [n.name for n in plan.nodes]) for f in found if f is not None]
