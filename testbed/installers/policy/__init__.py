"""The NetworkPolicy installer: every node enforces the policies that select its own pods (ingress to them,
egress from them), in one nftables table applied as one transaction, and only the difference after the first
sync (set elements, the two rule chains). With no policy at all the table is removed, so a lab without
policies pays nothing for them."""

from __future__ import annotations

from testbed.actions import Change, Context, each
from testbed.installers import Installer, register
from testbed.installers.policy import nft
from testbed.installers.policy.view import node_view
from testbed.plan.cluster import NodePlan
from testbed.runtime import agent


@register
class NetworkPolicies(Installer):
    name = "network-policy"
    title = "NetworkPolicy"

    def _apply(self, ctx: Context, render: bool) -> Change:
        policies = ctx.plan.policies if render else []

        def one(node: NodePlan) -> bool:
            text = nft.render(node_view(ctx.plan, node.name, policies)) if policies else None
            return bool(agent.call(ctx.run_dir(node.name), "rules", family=nft.FAMILY, table=nft.TABLE,
                                   text=text)["changed"])

        changed = sum(each(one, ctx.plan.nodes))
        return Change(changed=changed) if policies else Change(removed=changed)

    def install(self, ctx: Context) -> Change:
        return self._apply(ctx, True)

    def uninstall(self, ctx: Context) -> Change:
        return self._apply(ctx, False)
