"""The plan reduced to what one node programs, as kube-proxy reduces it: one entry per Service port and IP
family, with its frontends (cluster IPs, external and LoadBalancer IPs, the node port) and its endpoints split
into all ready ones and the ones on this node (CategorizeEndpoints). Pure."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from ipaddress import ip_address

from testbed.plan.cluster import NodePlan, Plan

MASQ_MARK = 0x4000


@dataclass
class Entry:
    id: str
    service: str  # ns/name
    port_name: str
    family: int  # 4 or 6
    protocol: str  # tcp, udp, sctp
    port: int  # the Service port
    cluster_ips: list[str]
    external_ips: list[str]  # externalIPs and LoadBalancer IPs
    node_port: int | None
    endpoints: list[tuple[str, int]]  # every ready endpoint of this family
    local: list[tuple[str, int]]  # those on this node
    external_local: bool = False
    internal_local: bool = False
    affinity: int | None = None

    def cluster_targets(self) -> list[tuple[str, int]]:
        return self.local if self.internal_local else self.endpoints

    def external_targets(self) -> list[tuple[str, int]]:
        return self.local if self.external_local else self.endpoints


@dataclass
class NodeView:
    node: str
    pod_cidrs: dict[int, str]  # family → the cluster's pod range
    entries: list[Entry] = field(default_factory=list)

    def hairpin(self, family: int) -> list[str]:
        """Local endpoints: a pod reaching its own Service and landing on itself is masqueraded."""
        return sorted({ip for e in self.entries if e.family == family for ip, _ in e.local})


def entry_id(service: str, port: str, family: int) -> str:
    return hashlib.sha256(f"{service}/{port}/{family}".encode()).hexdigest()[:12]


def node_view(plan: Plan, node: NodePlan) -> NodeView:
    net = plan.topology.networking
    view = NodeView(node.name, {4: str(net.podCIDR), **({6: str(net.podCIDRv6)} if net.dualStack else {})})
    for svc in plan.services:
        if svc.type == "ExternalName" or svc.headless:
            continue
        frontends = svc.external_ips + svc.lb_ips
        for port in svc.ports:
            for family in (4, 6):
                clusters = [ip for ip in svc.cluster_ips if ip_address(ip).version == family]
                externals = [ip for ip in frontends if ip_address(ip).version == family]
                if not clusters and not externals:
                    continue
                eps = [(ip, e.ports[port.key], e.node) for e in svc.ready_endpoints(port) for ip in e.ips
                       if ip_address(ip).version == family]
                view.entries.append(Entry(
                    entry_id(svc.key, port.key, family), svc.key, port.key, family, port.protocol.lower(), port.port,
                    clusters,
                    externals, port.node_port, sorted((ip, p) for ip, p, _ in eps),
                    sorted((ip, p) for ip, p, n in eps if n == node.name), svc.external_local, svc.internal_local,
                    svc.affinity_timeout))
    return view
