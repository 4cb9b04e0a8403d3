"""The plan reduced to what one node programs, as kube-proxy reduces it: one entry per Service port and IP
family, with its frontends (cluster IPs, external and LoadBalancer IPs, the node port) and its endpoints split
into all ready ones and the ones on this node (CategorizeEndpoints). Pure.

Each entry carries a digest of itself, made when the view is built, as kube-proxy's change tracker marks the
Services an event touched: a later sync compares digests, not the entries, and renders only the ones that
changed. A view's fingerprint (its entries' digests) is what a node's agent remembers of the rules it holds."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

from testbed.network.bridge import BRIDGE
from testbed.plan.cluster import NodePlan, Plan

MASQ_MARK = 0x4000
ZONE = "topology.kubernetes.io/zone"


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
    near: list[tuple[str, int]] = field(default_factory=list)  # trafficDistribution's pick, when it has one
    # the digest of what every node's entry for this port shares, made once a plan (`shared` below)
    common: str = field(default="", repr=False, compare=False)
    digest: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        common = self.common or _digest((self.id, self.protocol, self.port, self.cluster_ips, self.external_ips,
                                         self.node_port, self.endpoints, self.external_local, self.internal_local,
                                         self.affinity))
        self.digest = _digest((common, self.local, self.near))

    def cluster_targets(self) -> list[tuple[str, int]]:
        return self.local if self.internal_local else self.near or self.endpoints

    def external_targets(self) -> list[tuple[str, int]]:
        return self.local if self.external_local else self.near or self.endpoints

    def short_circuit_targets(self) -> list[tuple[str, int]]:
        """Where this node's pods and the node itself go when they dial an external frontend (node port,
        external or LoadBalancer IP) of a Local Service: kube-proxy sends them to the cluster policy's
        endpoints, as if they had gone out to a load balancer and come back in; none when it is not Local."""
        return self.near or self.endpoints if self.external_local else []


@dataclass
class NodeView:
    node: str
    pod_cidrs: dict[int, str]  # family → the cluster's pod range
    entries: list[Entry] = field(default_factory=list)
    # this node's pods that are some Service's endpoint: one reaching itself through the Service is masqueraded
    # (kube-proxy's endpoint chains match each endpoint's own source; a pod no Service sends to never hairpins,
    # so pods that come and go without Services change no node's rules)
    pods: list[str] = field(default_factory=list)
    service_cidrs: dict[int, str] = field(default_factory=dict)  # family → where cluster IPs come from
    # how this node's own pods' traffic is told apart (kube-proxy's local detector in BridgeInterface mode): it
    # comes in by the pod bridge; a pod on another node comes by the overlay or underlay, as an outside client
    local_if: str = BRIDGE

    def hairpin(self, family: int) -> list[str]:
        return sorted(ip for ip in self.pods if (":" in ip) == (family == 6))

    def cluster_ips(self, family: int) -> list[str]:
        """Every cluster IP of this family that a Service port holds (kube-proxy's cluster-ips set)."""
        return sorted({ip for e in self.entries if e.family == family for ip in e.cluster_ips})

    @cached_property
    def digests(self) -> dict[str, str]:
        """Entry id → its digest; read once the view is complete, as is the fingerprint."""
        return {e.id: e.digest for e in self.entries}

    @cached_property
    def fingerprint(self) -> str:
        """Of everything a rendering reads, in the view's order (the plan's, so the same plan gives the same)."""
        whole = hashlib.sha256(repr((self.pod_cidrs, self.pods, self.service_cidrs, self.local_if)).encode())
        whole.update("".join(f"{i}{d}" for i, d in self.digests.items()).encode())
        return whole.hexdigest()[:32]


def changes(old: NodeView, new: NodeView) -> list[tuple[Entry | None, Entry | None]]:
    """(before, after) for each entry that came, went or changed."""
    was, now = old.digests, new.digests
    ids = [i for i, d in now.items() if was.get(i) != d] + [i for i in was if i not in now]
    if not ids:
        return []
    wanted = set(ids)
    olds, news = {e.id: e for e in old.entries if e.id in wanted}, {e.id: e for e in new.entries if e.id in wanted}
    return [(olds.get(i), news.get(i)) for i in ids]


def near(distribution: str | None, endpoints: list[tuple[str, int, str]], node: str,
         zones: dict[str, str]) -> list[tuple[str, int]]:
    """The endpoints trafficDistribution prefers from this node, or none (then every endpoint), as kube-proxy
    reads the hints the EndpointSlice controller writes: PreferSameNode, this node's endpoints if it has any;
    then (and for PreferSameZone) those in this node's zone, if every endpoint's node has a zone label."""
    if distribution is None:
        return []
    chosen = [(ip, p) for ip, p, n in endpoints if n == node] if distribution == "PreferSameNode" else []
    if not chosen and zones.get(node) and all(zones.get(n) for _, _, n in endpoints):
        chosen = [(ip, p) for ip, p, n in endpoints if zones[n] == zones[node]]
    return sorted(chosen)


def entry_id(service: str, port: str, family: int) -> str:
    return hashlib.sha256(f"{service}/{port}/{family}".encode()).hexdigest()[:12]


@dataclass
class Port:
    """One Service port and IP family as every node sees it: all but the node's own endpoints and preference."""

    args: tuple  # Entry's fields up to its endpoints
    endpoints: list[tuple[str, int, str]]  # (ip, port, node) of each ready endpoint
    by_node: dict[str, list[tuple[str, int]]]
    rest: tuple  # Entry's external_local, internal_local and affinity
    distribution: str | None
    common: str
    remote: Entry | None = None  # the entry of every node that holds none of its endpoints and prefers none

    def entry(self, node: str, zones: dict[str, str]) -> Entry:
        local, nearest = self.by_node.get(node, []), near(self.distribution, self.endpoints, node, zones)
        if local or nearest:
            return Entry(*self.args, local, *self.rest, nearest, common=self.common)
        if self.remote is None:  # views share it: nothing changes an entry once it is made
            self.remote = Entry(*self.args, [], *self.rest, [], common=self.common)
        return self.remote


def shared(plan: Plan) -> list[Port]:
    """What node_view needs of the plan's Services, made once for all its nodes: at 1,000 Services a node's view
    then costs its own endpoints and preferences only."""
    out = []
    for svc in plan.services:
        if svc.type == "ExternalName" or svc.headless:
            continue
        frontends = svc.external_ips + svc.lb_ips
        for port in svc.ports:
            ready = svc.ready_endpoints(port)
            for family in (4, 6):
                clusters = [ip for ip in svc.cluster_ips if _family(ip) == family]
                externals = [ip for ip in frontends if _family(ip) == family]
                if not clusters and not externals:
                    continue
                eps = [(ip, e.ports[port.key], e.node) for e in ready for ip in e.ips if _family(ip) == family]
                by_node: dict[str, list[tuple[str, int]]] = {}
                for ip, p, n in sorted(eps):
                    by_node.setdefault(n, []).append((ip, p))
                args = (entry_id(svc.key, port.key, family), svc.key, port.key, family, port.protocol.lower(),
                        port.port, clusters, externals, port.node_port, sorted((ip, p) for ip, p, _ in eps))
                rest = (svc.external_local, svc.internal_local, svc.affinity_timeout)
                common = _digest((args[0], *args[4:], *rest))
                out.append(Port(args, eps, by_node, rest, svc.distribution, common))
    return out


def node_view(plan: Plan, node: NodePlan, ports: list[Port] | None = None) -> NodeView:
    """ports: shared(plan), when several nodes' views are made."""
    net = plan.topology.networking
    view = NodeView(node.name, {4: str(net.podCIDR), **({6: str(net.podCIDRv6)} if net.dualStack else {})})
    view.service_cidrs = {4: str(net.serviceCIDR), **({6: str(net.serviceCIDRv6)} if net.dualStack else {})}
    zones = {n.name: n.labels[ZONE] for n in plan.nodes if ZONE in n.labels}
    view.entries = [port.entry(node.name, zones) for port in (shared(plan) if ports is None else ports)]
    view.pods = sorted({ip for e in view.entries for ip, _ in e.local})
    return view


def _family(ip: str) -> int:
    return 6 if ":" in ip else 4


def _digest(fields: tuple) -> str:
    return hashlib.blake2b(repr(fields).encode(), digest_size=10).hexdigest()
