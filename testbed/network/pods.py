"""Pods: each node's agent is handed the full list of its pods and makes the node match (create, keep,
recreate on change, remove), so this action is also how `apply` and `delete` take effect."""

from __future__ import annotations

from ipaddress import ip_network
from typing import Any

from testbed.actions import Context, each
from testbed.network.bridge import BRIDGE
from testbed.plan.cluster import NodePlan, PodPlan
from testbed.runtime import agent


def resolv_conf(pod: PodPlan, dns_ip: str, zone: str, upstream: str | None) -> str:
    """As the kubelet writes it for the pod's dnsPolicy, merged with its dnsConfig: ClusterFirst (the cluster
    DNS and its search path), Default (what the node uses: the lab's external DNS server), None (dnsConfig
    alone)."""
    policy, config = pod.dns.get("policy", "ClusterFirst"), pod.dns.get("config", {})
    servers: list[str] = []
    searches: list[str] = []
    options: dict[str, str | None] = {}
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        servers, searches, options = [dns_ip], [f"{pod.namespace}.svc.{zone}", f"svc.{zone}", zone], {"ndots": "5"}
    elif policy == "Default" and upstream:
        servers = [upstream]
    servers = list(dict.fromkeys(servers + config.get("nameservers", [])))[:3]
    searches = list(dict.fromkeys(searches + config.get("searches", [])))[:32]
    options |= {o["name"]: o.get("value") for o in config.get("options", [])}
    lines = [f"search {' '.join(searches)}"] if searches else []
    lines += [f"nameserver {s}" for s in servers]
    if options:
        lines.append("options " + " ".join(k if v is None else f"{k}:{v}" for k, v in options.items()))
    return "\n".join(lines) + "\n"


def node_net(node: NodePlan, mtu: int) -> dict[str, Any]:
    net = {"bridge": BRIDGE, "mtu": mtu, "gateway4": node.gateway4, "prefix4": ip_network(node.cidr4).prefixlen}
    if node.cidr6:
        net |= {"gateway6": node.gateway6, "prefix6": ip_network(node.cidr6).prefixlen}
    return net


def pod_spec(pod: PodPlan, dns_ip: str, zone: str = "cluster.local", upstream: str | None = None) -> dict[str, Any]:
    spec = {"netns": pod.netns, "namespace": pod.namespace, "name": pod.name, "hostname": pod.hostname,
            "ipv4": pod.ipv4, "ipv6": pod.ipv6, "resolv": resolv_conf(pod, dns_ip, zone, upstream),
            "routed": pod.routed,
            "ports": [{"port": p.port, "protocol": p.protocol} for p in pod.ports]}
    if pod.processes:  # only then, so pods that run nothing keep their spec digest (and are not recreated)
        spec["processes"] = pod.processes
        if pod.restart != "Always":
            spec["restart"] = pod.restart
    if pod.probes:
        spec["probes"] = pod.probes
    return spec


class Pods:
    title = "Creating pods"

    def run(self, ctx: Context) -> None:
        mtu = ctx.plan.topology.networking.pod_mtu
        dns_ip = ctx.plan.topology.dns_ip()
        zone = ctx.plan.topology.networking.clusterDomain
        upstream = next((h.ip for h in ctx.plan.externals if h.role == "dns"), None)

        def one(node: NodePlan) -> dict[str, Any]:
            specs = [pod_spec(p, dns_ip, zone, upstream) for p in ctx.plan.pods_on(node.name)]
            return agent.call(ctx.run_dir(node.name), "sync_pods", net=node_net(node, mtu), pods=specs)

        results = each(one, ctx.plan.nodes)
        created = sum(r["created"] for r in results)
        removed = sum(r["removed"] for r in results)
        if created or removed:
            ctx.say(f"pods: {created} created, {removed} removed, {len(ctx.plan.pods)} in all")
