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
        plan = ctx.plan
        use_nft = plan.topology.kubeProxy.mode == "nftables"
        holders = {} if mode(plan.topology.networking.network).router_learns(plan) else \
            services.l2_holders(plan.services, [n.name for n in plan.nodes])
        dual = plan.topology.networking.dualStack

        def one(node: NodePlan) -> bool:
            view = node_view(plan, node)
            run_dir = ctx.run_dir(node.name)
            if use_nft:
                changed = agent.call(run_dir, "rules", family=nft.FAMILY, table=nft.TABLE, text=nft.render(view))
                agent.call(run_dir, "iptables", v4=ipt.empty(), v6=ipt.empty() if dual else None)
            else:
                changed = agent.call(run_dir, "iptables", v4=ipt.render(view, 4),
                                     v6=ipt.render(view, 6) if dual else None)
                agent.call(run_dir, "rules", family=nft.FAMILY, table=nft.TABLE, text=None)
            agent.call(run_dir, "conntrack", flows=_udp_flows_gone(ctx, node, view))
            _l2(ctx, node, sorted(ip for ip, holder in holders.items() if holder == node.name))
            return bool(changed["changed"])

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


def _udp_flows_gone(ctx: Context, node: NodePlan, view: NodeView) -> list[list[object]]:
    """UDP (service IP, port, endpoint) flows that this sync removes, against the plan before the change: their
    conntrack entries would keep sending clients to an endpoint that is gone."""
    previous = ctx.previous
    if previous is None or node.name not in {n.name for n in previous.nodes}:
        return []
    before, now = _udp(node_view(previous, previous.node(node.name))), _udp(view)
    return [list(flow) for flow in sorted(before - now)]


def _udp(view: NodeView) -> set[tuple[str, int, str]]:
    return {(ip, e.port, ep) for e in view.entries if e.protocol == "udp" for ip in e.cluster_ips + e.external_ips
            for ep, _ in e.endpoints}
