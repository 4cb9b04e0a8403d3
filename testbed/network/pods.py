"""Pods: each node's agent is handed the full list of its pods and makes the node match (create, keep,
recreate on change, remove), so this action is also how `apply` and `delete` take effect."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from ipaddress import ip_network
from typing import Any

from testbed.actions import Context
from testbed.network.bridge import BRIDGE
from testbed.plan.cluster import NodePlan, PodPlan
from testbed.runtime import agent

CLUSTER_DOMAIN = "cluster.local"


def resolv_conf(pod: PodPlan, dns_ip: str) -> str:
    search = f"{pod.namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}"
    return f"search {search}\nnameserver {dns_ip}\noptions ndots:5\n"


def node_net(node: NodePlan, mtu: int) -> dict[str, Any]:
    net = {"bridge": BRIDGE, "mtu": mtu, "gateway4": node.gateway4, "prefix4": ip_network(node.cidr4).prefixlen}
    if node.cidr6:
        net |= {"gateway6": node.gateway6, "prefix6": ip_network(node.cidr6).prefixlen}
    return net


def pod_spec(pod: PodPlan, dns_ip: str) -> dict[str, Any]:
    spec = {"netns": pod.netns, "namespace": pod.namespace, "name": pod.name, "hostname": pod.hostname,
            "ipv4": pod.ipv4, "ipv6": pod.ipv6, "resolv": resolv_conf(pod, dns_ip), "routed": pod.routed,
            "ports": [{"port": p.port, "protocol": p.protocol} for p in pod.ports]}
    if pod.processes:  # only then, so pods that run nothing keep their spec digest (and are not recreated)
        spec["processes"] = pod.processes
    return spec


class Pods:
    title = "Creating pods"

    def run(self, ctx: Context) -> None:
        mtu = ctx.plan.topology.networking.pod_mtu
        dns_ip = ctx.plan.topology.dns_ip()

        def one(node: NodePlan) -> dict[str, Any]:
            specs = [pod_spec(p, dns_ip) for p in ctx.plan.pods_on(node.name)]
            return agent.call(ctx.run_dir(node.name), "sync_pods", net=node_net(node, mtu), pods=specs)

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(one, ctx.plan.nodes))
        created = sum(r["created"] for r in results)
        removed = sum(r["removed"] for r in results)
        if created or removed:
            ctx.say(f"pods: {created} created, {removed} removed, {len(ctx.plan.pods)} in all")
