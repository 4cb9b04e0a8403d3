"""The NetworkPolicy installer: every node enforces the policies that select its own pods (ingress to them,
egress from them), in the lab's kube-proxy mode: one nftables table (nft.py), or ipsets and the mangle table
through iptables-restore (ipt.py), each applied in one transaction per sync and, after the first, as the
difference. The other mode's rules are removed. With no policy at all both are removed, so a lab without
policies pays nothing for them."""

from __future__ import annotations

import time
from typing import Any

from testbed.actions import Change, Context, each
from testbed.checks import Finding, Observation, compared
from testbed.installers import Installer, register, report
from testbed.installers.policy import ipt, nft
from testbed.installers.policy.view import node_view
from testbed.plan.cluster import NodePlan, Plan
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
        collapsed: dict = {}  # peer address sets: the same in both plans when their pods are
        peers: dict = {"collapsed": collapsed}  # computed once for all nodes
        before: dict = {"collapsed": collapsed}  # the same, of the previous plan

        def rendered(p: Plan, node: str, policies: list[Any], cache: dict) -> tuple[str | None, tuple[dict, dict]]:
            """The node's nftables table, or its ipsets and mangle tables."""
            view = node_view(p, node, policies, cache) if policies else None
            if view is None:
                return None, ({}, {})
            return (nft.render(view), ({}, {})) if use_nft else (None, ipt.render(view))

        # rendered here, one node after another: pure Python, which threads would only take turns at (the GIL),
        # slowing the agent calls they wait on
        views = {node.name: rendered(plan, node.name, policies, peers) for node in plan.nodes}
        held = {node.name: render and ctx.unchanged(  # the node holds these rules: nothing is sent
            lambda p, name=node.name: views[name] if p is plan else rendered(p, name, p.policies, before))
            for node in plan.nodes}

        # the other mode's rules went with the last sync in this mode (or never were, on a new container)
        same_mode = ctx.unchanged(lambda p: p.topology.kubeProxy.mode)

        def one(node: NodePlan) -> bool:
            text, (sets, tables) = views[node.name]
            if held[node.name]:
                return False  # the node holds these rules: nothing is sent
            fresh = node.name in ctx.fresh
            clean = same_mode or fresh
            run_dir = ctx.run_dir(node.name)
            verify, start = ctx.verify, time.monotonic()
            changed = False
            # each mode's own rules, and the other mode's to remove unless they are known gone
            if (use_nft and (text is not None or not fresh)) or not clean:
                answer = agent.call(run_dir, "rules", family=nft.FAMILY, table=nft.TABLE, text=text, verify=verify)
                changed = report(ctx, self.name, node.name, f"table {nft.FAMILY} {nft.TABLE}", answer, start)
            if sets:
                changed |= bool(agent.call(run_dir, "ipsets", prefix=ipt.PREFIX, sets=sets, verify=verify)["changed"])
            if (not use_nft and (tables or sets or not fresh)) or not clean:
                answer = agent.call(run_dir, "iptables", owner="policy", v4=tables.get(4, ipt.empty()),
                                    v6=tables.get(6, ipt.empty()) if dual else None, verify=verify)
                changed |= report(ctx, self.name, node.name, "mangle table", answer, start)
                changed |= bool(agent.call(run_dir, "ipsets", prefix=ipt.PREFIX, keep=sorted(sets))["removed"])
            return bool(changed)

        changed = sum(each(one, plan.nodes))
        return Change(changed=changed) if policies else Change(removed=changed)

    def install(self, ctx: Context) -> Change:
        return self._apply(ctx, True)

    def uninstall(self, ctx: Context) -> Change:
        return self._apply(ctx, False)

    def check(self, obs: Observation, deep: bool) -> list[Finding]:
        """Deep: every node's policy rules (and ipsets) as the kernel holds them, against the plan's."""
        plan = obs.plan
        if not deep or not plan.policies:
            return []
        use_nft, dual, peers = plan.topology.kubeProxy.mode == "nftables", plan.topology.networking.dualStack, {}

        def one(node: NodePlan) -> list[Finding | None]:
            view = node_view(plan, node.name, plan.policies, peers)
            if use_nft:
                return [compared("policy rules", node.name, f"table {nft.FAMILY} {nft.TABLE}",
                                 obs.call(node.name, "compare", kind="nft", family=nft.FAMILY, table=nft.TABLE,
                                          text=nft.render(view)))]
            sets, tables = ipt.render(view)
            got = obs.call(node.name, "compare", kind="iptables", v4=tables.get(4, ipt.empty()),
                           v6=tables.get(6, ipt.empty()) if dual else None) or {}
            out = [compared("policy rules", node.name, f"IPv{v[1]} mangle table", r) for v, r in got.items()]
            sets_got = obs.call(node.name, "compare", kind="ipsets", prefix=ipt.PREFIX, sets=sets)
            return [*out, compared("policy rules", node.name, "ipsets", sets_got)]

        return [f for found in each(one, plan.nodes) for f in found if f is not None]
