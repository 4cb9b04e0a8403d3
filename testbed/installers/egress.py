"""Egress NAT (`networking.natOutgoing`, Calico's natOutgoing): pod traffic to anything outside the cluster's pod,
service and underlay ranges is masqueraded to the node's address as it leaves the node. One nftables table per
node, `inet testbed-egress`, rendered here and replaced atomically by the node's agent."""

from __future__ import annotations

from testbed.actions import Change, Context, each
from testbed.installers import Installer, register
from testbed.model.topology import Topology
from testbed.plan.cluster import Plan
from testbed.runtime import agent

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
            return bool(agent.call(ctx.run_dir(node), "rules", family=FAMILY, table=TABLE, text=text)["changed"])

        changed = sum(each(one, [n.name for n in ctx.plan.nodes]))
        return Change(changed=changed) if text else Change(removed=changed)

    def install(self, ctx: Context) -> Change:
        return self._apply(ctx, render(ctx.plan))

    def uninstall(self, ctx: Context) -> Change:
        return self._apply(ctx, None)
