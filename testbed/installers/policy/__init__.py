"""The NetworkPolicy installer: every node enforces the policies that select its own pods (ingress to them,
egress from them), in the lab's kube-proxy mode: one nftables table (nft.py), or ipsets and the mangle table
through iptables-restore (ipt.py), each applied in one transaction per sync and, after the first, as the
difference. The other mode's rules are removed. With no policy at all both are removed, so a lab without
policies pays nothing for them."""

from __future__ import annotations

from testbed.actions import Change, Context, each
from testbed.installers import Installer, register
from testbed.installers.policy import ipt, nft
from testbed.installers.policy.view import node_view
from testbed.plan.cluster import NodePlan
from testbed.runtime import agent


@register
class NetworkPolicies(Installer):
    name = "network-policy"
    title = "NetworkPolicy"

    def _apply(self, ctx: Context, render: bool) -> Change:
        plan = ctx.plan
        policies = plan.policies if render else []
        use_nft = plan.topology.kubeProxy.mode == "nftables"
        dual = plan.topology.networking.dualStack
        peers: dict = {}  # computed once for all nodes

        def one(node: NodePlan) -> bool:
            run_dir = ctx.run_dir(node.name)
            view = node_view(plan, node.name, policies, peers) if policies else None
            text = nft.render(view) if view and use_nft else None
            changed = agent.call(run_dir, "rules", family=nft.FAMILY, table=nft.TABLE, text=text)["changed"]
            sets, tables = ipt.render(view) if view and not use_nft else ({}, {})
            if sets:
                changed |= bool(agent.call(run_dir, "ipsets", prefix=ipt.PREFIX, sets=sets)["changed"])
            changed |= agent.call(run_dir, "iptables", owner="policy", v4=tables.get(4, ipt.empty()),
                                  v6=tables.get(6, ipt.empty()) if dual else None)["changed"]
            changed |= bool(agent.call(run_dir, "ipsets", prefix=ipt.PREFIX, keep=sorted(sets))["removed"])
            return bool(changed)

        changed = sum(each(one, plan.nodes))
        return Change(changed=changed) if policies else Change(removed=changed)

    def install(self, ctx: Context) -> Change:
        return self._apply(ctx, True)

    def uninstall(self, ctx: Context) -> Change:
        return self._apply(ctx, False)
