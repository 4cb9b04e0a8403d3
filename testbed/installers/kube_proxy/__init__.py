"""The kube-proxy installer: Services programmed on every node, in the topology's `kubeProxy.mode` (nftables by
default, or iptables), one transaction per node per sync, and the other mode's rules removed.

LoadBalancer IPs reach the nodes from outside as MetalLB would bring them: in bgp mode every node (with
`externalTrafficPolicy: Local`, every node with a local endpoint) announces each IP to the router; in the
other modes one node holds the IP on its loopback and answers ARP/NDP for it on the underlay, and the router
sends the pools there on-link.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

from pyroute2.netlink.rtnl.ndmsg import NTF_PROXY

from testbed import netns
from testbed.actions import Change, Context, each
from testbed.agent import nsutil
from testbed.installers import Installer, register
from testbed.installers.kube_proxy import ipt, nft
from testbed.installers.kube_proxy.view import NodeView, node_view
from testbed.network.registry import mode
from testbed.network.underlay import NODE_IF
from testbed.plan import services
from testbed.plan.cluster import NodePlan
from testbed.runtime import agent

LOOPBACK = 1  # ifindex of lo


def _l2(ctx: Context, node: NodePlan, ips: list[str]) -> None:
    """The node's loopback holds exactly ips (as kube-proxy's IPVS mode holds Service IPs on a dummy link; this
    kernel has no dummy driver): the node answers ARP for them on the underlay, and proxy NDP for IPv6 ones."""
    path = ctx.netns(node.name)
    with netns.ipr(path) as nd:
        netns.sync_addresses(nd, LOOPBACK, [(ip, 32 if ":" not in ip else 128) for ip in ips])
        eth0 = netns.one(nd, NODE_IF)
        for ip in ips:
            if ":" in ip:
                with contextlib.suppress(Exception):
                    nd.neigh("replace", dst=ip, ifindex=eth0, flags=NTF_PROXY, family=socket.AF_INET6)
    if any(":" in ip for ip in ips):
        with nsutil.entered(path):
            nsutil.write_sysctl(f"net.ipv6.conf.{NODE_IF}.proxy_ndp", 1)


@register
class KubeProxy(Installer):
    name = "kube-proxy"
    title = "kube-proxy (Services)"

    def install(self, ctx: Context) -> Change:
        plan, previous = ctx.plan, ctx.previous
        use_nft = plan.topology.kubeProxy.mode == "nftables"
        holders = {} if mode(plan.topology.networking.network).router_learns(plan) else \
            services.l2_holders(plan.services, [n.name for n in plan.nodes])
        dual = plan.topology.networking.dualStack

        def one(node: NodePlan) -> bool:
            view = node_view(plan, node)
            old = node_view(previous, previous.node(node.name)) \
                if previous is not None and node.name in {n.name for n in previous.nodes} else None
            run_dir = ctx.run_dir(node.name)
            # the other mode's rules go first: iptables-restore reads every table there is
            if use_nft:
                agent.call(run_dir, "iptables", v4=ipt.empty(), v6=ipt.empty() if dual else None)
                changed = sync_nft(run_dir, view, old)
            else:
                agent.call(run_dir, "rules", family=nft.FAMILY, table=nft.TABLE, text=None)
                changed = sync_iptables(run_dir, view, old, dual)
            agent.call(run_dir, "conntrack", flows=_udp_flows_gone(old, view))
            _l2(ctx, node, sorted(ip for ip, holder in holders.items() if holder == node.name))
            return changed

        return Change(changed=sum(each(one, plan.nodes)))

    def uninstall(self, ctx: Context) -> Change:
        dual = ctx.plan.topology.networking.dualStack

        def one(node: NodePlan) -> bool:
            run_dir = ctx.run_dir(node.name)
            gone = agent.call(run_dir, "rules", family=nft.FAMILY, table=nft.TABLE, text=None)["changed"]
            agent.call(run_dir, "iptables", v4=ipt.empty(), v6=ipt.empty() if dual else None)
            _l2(ctx, node, [])
            return bool(gone)

        return Change(removed=sum(each(one, ctx.plan.nodes)))


def sync_nft(run_dir: Path, view: NodeView, old: NodeView | None) -> bool:
    """Only what changed since `old` when the node holds what `old` rendered to; else the whole table."""
    table = {"family": nft.FAMILY, "table": nft.TABLE, "token": view.fingerprint}
    if old is not None and (script := nft.patch(old, view)) is not None:
        answer = agent.call(run_dir, "rules", **table, patch=script, base=old.fingerprint)
        if not answer.get("stale"):
            return bool(answer["changed"])
    return bool(agent.call(run_dir, "rules", **table, text=nft.render(view))["changed"])


def sync_iptables(run_dir: Path, view: NodeView, old: NodeView | None, dual: bool) -> bool:
    """As sync_nft, with a `--noflush` restore of the chains that changed, or the whole tables."""
    token = f"{view.fingerprint}/{dual}"
    if old is not None:
        v4, v6 = ipt.patch(old, view, 4), ipt.patch(old, view, 6) if dual else ""
        if v4 is not None and v6 is not None:
            answer = agent.call(run_dir, "iptables", v4=v4, v6=v6 or None, base=f"{old.fingerprint}/{dual}",
                                token=token)
            if not answer.get("stale"):
                return bool(answer["changed"])
    return bool(agent.call(run_dir, "iptables", v4=ipt.render(view, 4), v6=ipt.render(view, 6) if dual else None,
                           token=token)["changed"])


def _udp_flows_gone(old: NodeView | None, view: NodeView) -> list[list[object]]:
    """UDP (service IP, port, endpoint) flows that this sync removes, against the plan before the change: their
    conntrack entries would keep sending clients to an endpoint that is gone."""
    if old is None:
        return []
    return [list(flow) for flow in sorted(_udp(old) - _udp(view))]


def _udp(view: NodeView) -> set[tuple[str, int, str]]:
    return {(ip, e.port, ep) for e in view.entries if e.protocol == "udp" for ip in e.cluster_ips + e.external_ips
            for ep, _ in e.endpoints}
