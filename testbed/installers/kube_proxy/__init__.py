"""The kube-proxy installer: Services programmed on every node, in the topology's `kubeProxy.mode` (nftables by
default, or iptables), one transaction per node per sync, and the other mode's rules removed.

LoadBalancer IPs reach the nodes from outside as MetalLB would bring them: in bgp mode every node (with
`externalTrafficPolicy: Local`, every node with a local endpoint) announces each IP to the router; in the
other modes one node holds the IP on its loopback and answers ARP/NDP for it on the underlay, and the router
sends the pools there on-link.
"""

from __future__ import annotations

import time

from testbed import events
from testbed.actions import Change, Context, each
from testbed.checks import Finding, Observation, compared
from testbed.installers import Installer, register
from testbed.installers.kube_proxy import endpoints, ipt, nft, sync
from testbed.installers.kube_proxy.view import NodeView, node_view, shared
from testbed.network.registry import mode
from testbed.network.underlay import NODE_IF
from testbed.plan import services
from testbed.plan.cluster import NodePlan, Plan
from testbed.runtime import agent

LOOPBACK = 1  # ifindex of lo


def _l2(ctx: Context, node: NodePlan, ips: list[str]) -> None:
    """The node's loopback holds exactly ips (as kube-proxy's IPVS mode holds Service IPs on a dummy link; this
    kernel has no dummy driver): the node answers ARP for them on the underlay, and proxy NDP for IPv6 ones."""
    ctx.netops(node.name, "loopback", addresses=ips, proxy_ndp_dev=NODE_IF)


@register
class KubeProxy(Installer):
    name = "kube-proxy"
    title = "kube-proxy (Services)"

    def install(self, ctx: Context) -> Change:
        plan, previous = ctx.plan, ctx.previous
        use_nft = plan.topology.kubeProxy.mode == "nftables"
        dual = plan.topology.networking.dualStack

        def holders(p: Plan) -> dict[str, list[str]]:
            """The LoadBalancer addresses each node answers ARP/NDP for, when no router learns them."""
            out: dict[str, list[str]] = {}
            if not mode(p.topology.networking.network).router_learns(p):
                for ip, holder in sorted(services.l2_holders(p.services, [n.name for n in p.nodes]).items()):
                    out.setdefault(holder, []).append(ip)
            return out

        held = holders(plan)
        held_before = holders(previous) if ctx.trusted and previous is not None else None

        # every node's views made here, from what the plan's Services share, before the agents are asked at once
        ports = shared(plan)
        views = {n.name: node_view(plan, n, ports) for n in plan.nodes}
        olds: dict[str, NodeView] = {}
        if previous is not None:
            before = shared(previous)
            olds = {n.name: node_view(previous, n, before) for n in previous.nodes if n.name in views}

        def one(node: NodePlan) -> bool:
            view, old = views[node.name], olds.get(node.name)
            if old is not None and held_before is not None and old.fingerprint == view.fingerprint and \
                    held_before.get(node.name) == held.get(node.name) and \
                    ctx.unchanged(lambda p: p.topology.kubeProxy.mode):
                return False  # the node holds these rules and addresses: nothing is sent
            run_dir = ctx.run_dir(node.name)
            # the other mode's rules go first: iptables-restore reads every table there is (gone already when
            # the last sync ran this mode)
            # `up` reads the kernel and sends the whole table (a table changed behind the agent's back heals)
            old = None if ctx.verify else old
            start = time.monotonic()
            other_gone = ctx.unchanged(lambda p: p.topology.kubeProxy.mode) or node.name in ctx.fresh
            if use_nft:
                if not other_gone:
                    agent.call(run_dir, "iptables", v4=ipt.empty(), v6=ipt.empty() if dual else None,
                               verify=ctx.verify)
                done = sync.nftables(run_dir, view, old, ctx.verify)
            else:
                if not other_gone:
                    agent.call(run_dir, "rules", family=nft.FAMILY, table=nft.TABLE, text=None, verify=ctx.verify)
                done = sync.iptables(run_dir, view, old, dual, ctx.verify)
            if flows := _udp_flows_gone(old, view):
                agent.call(run_dir, "conntrack", flows=flows)
            if held_before is None or held_before.get(node.name) != held.get(node.name):
                _l2(ctx, node, held.get(node.name, []))
            if done.changed:
                events.emit(ctx.lab, "Synced", f"node/{node.name}", f"kube-proxy ({plan.topology.kubeProxy.mode}): "
                            f"{done} in {time.monotonic() - start:.3f}s", installer=self.name, node=node.name,
                            duration=round(time.monotonic() - start, 4), **done.fields())
            return done.changed

        return Change(changed=sum(each(one, plan.nodes)))

    def check(self, obs: Observation, deep: bool) -> list[Finding]:
        """Every Service with a selector has ready endpoints (else the selector and the pods that come closest);
        deep: every node's rules as the kernel holds them, against the plan's."""
        out = endpoints.check(obs.plan)
        if not deep:
            return out
        plan, use_nft = obs.plan, obs.plan.topology.kubeProxy.mode == "nftables"
        dual = plan.topology.networking.dualStack

        ports = shared(plan)

        def one(node: NodePlan) -> list[Finding | None]:
            view = node_view(plan, node, ports)
            if use_nft:
                got = obs.call(node.name, "compare", kind="nft", family=nft.FAMILY, table=nft.TABLE,
                               text=nft.render(view))
                return [compared("kube-proxy rules", node.name, f"table {nft.FAMILY} {nft.TABLE}", got)]
            got = obs.call(node.name, "compare", kind="iptables", v4=ipt.render(view, 4),
                           v6=ipt.render(view, 6) if dual else None)
            return [compared("kube-proxy rules", node.name, f"IPv{v[1]} nat and filter tables", result)
                    for v, result in (got or {}).items()]

        return out + [f for found in each(one, plan.nodes) for f in found if f is not None]

    def uninstall(self, ctx: Context) -> Change:
        dual = ctx.plan.topology.networking.dualStack

        def one(node: NodePlan) -> bool:
            run_dir = ctx.run_dir(node.name)
            gone = agent.call(run_dir, "rules", family=nft.FAMILY, table=nft.TABLE, text=None)["changed"]
            agent.call(run_dir, "iptables", v4=ipt.empty(), v6=ipt.empty() if dual else None)
            _l2(ctx, node, [])
            return bool(gone)

        return Change(removed=sum(each(one, ctx.plan.nodes)))


def _udp_flows_gone(old: NodeView | None, view: NodeView) -> list[list[object]]:
    """UDP (service IP, port, endpoint) flows that this sync removes, against the plan before the change: their
    conntrack entries would keep sending clients to an endpoint that is gone."""
    if old is None:
        return []
    return [list(flow) for flow in sorted(_udp(old) - _udp(view))]


def _udp(view: NodeView) -> set[tuple[str, int, str]]:
    return {(ip, e.port, ep) for e in view.entries if e.protocol == "udp" for ip in e.cluster_ips + e.external_ips
            for ep, _ in e.endpoints}
