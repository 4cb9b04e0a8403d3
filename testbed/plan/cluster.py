"""The whole desired cluster, derived from topology + manifests + earlier allocations: nodes with their ranges
and overlay identities, namespaces, and pods with node and addresses."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any

from testbed.errors import InvalidInput, Problem, show
from testbed.model import kube
from testbed.model.hosts import STITCH_OVERHEAD
from testbed.model.loader import Manifest
from testbed.model.networkpolicy import NetworkPolicy
from testbed.model.topology import Topology
from testbed.plan import gateways, ingresses, ipam, machines, services
from testbed.plan.machines import ExternalPlan, FabricPlan, RouterPlan
from testbed.plan.routing import INGRESS_NAMESPACE, EdgePlan
from testbed.plan.services import ServicePlan
from testbed.plan.workloads import PodIntent, Port, Unschedulable, expand, schedule

MAX_NETNS = 200  # /run/netns/<name>: file names stop at 255 bytes


@dataclass(frozen=True)
class NetworkTraits:
    """What the plan needs of the lab's pod network mode; the lab asks the network registry for it."""

    overhead: int = 0  # encapsulation bytes: pods get the underlay MTU minus this
    keeps_ip_on_move: bool = False  # pods may live outside their node's range (routes follow them)


@dataclass(frozen=True)
class Control:
    """What the lab's control plane decided: nodes not ready (their pods are not ready, no new pod goes there),
    and how often each Deployment replica was evicted (it is recreated elsewhere under a new name)."""

    not_ready: set[str] = field(default_factory=set)
    generations: dict[str, int] = field(default_factory=dict)


@dataclass
class NodePlan:
    name: str
    index: int
    container: str
    labels: dict[str, str]
    underlay_ip: str
    vtep_mac: str
    cidr4: str
    gateway4: str
    vtep4: str
    cidr6: str | None = None
    gateway6: str | None = None
    vtep6: str | None = None
    underlay_ip6: str | None = None
    asn: int = 0
    role: str = "node"
    host: str = ""  # of the topology's hosts (machines.LOCAL_HOST without any)


@dataclass
class PodPlan:
    namespace: str
    name: str
    node: str
    labels: dict[str, str]
    ports: list[Port]
    ipv4: str
    ipv6: str | None = None
    owner: str | None = None
    routed: bool = False  # its IP is outside its node's range (it moved): a host route, not the bridge's subnet
    processes: dict[str, list[str]] = field(default_factory=dict)  # container → argv; none: netexec serves
    dns: dict[str, Any] = field(default_factory=dict)  # hostname, subdomain, policy, config
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)  # container → readinessProbe
    ready: bool = True  # a pod with probes: as its node's agent last observed them (not ready until they pass)
    restart: str = "Always"  # restartPolicy of its processes
    bandwidth: dict[str, int] = field(default_factory=dict)  # ingress/egress rates from its annotations
    lifecycle: dict[str, dict[str, Any]] = field(default_factory=dict)  # container → liveness/startup probes
    replica: str | None = None  # a Deployment replica's identity across evictions: ns/deployment/index

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def netns(self) -> str:
        """'_' cannot appear in Kubernetes names, so this never collides. A name too long for a file name (a
        namespace and pod name can reach 317 characters) is cut and given a digest of the whole."""
        whole = f"{self.namespace}_{self.name}"
        if len(whole) <= MAX_NETNS:
            return whole
        return f"{whole[:MAX_NETNS - 17]}-{hashlib.sha256(whole.encode()).hexdigest()[:16]}"

    @property
    def hostname(self) -> str:
        """As the kubelet sets it: spec.hostname, or the pod name cut to 63 characters without a trailing '-'
        or '.'."""
        return self.dns.get("hostname") or self.name[:63].rstrip("-.")


@dataclass
class Plan:
    lab: str
    topology: Topology
    underlay: IPv4Network
    nodes: list[NodePlan]
    pods: list[PodPlan]
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)
    router: RouterPlan | None = None
    externals: list[ExternalPlan] = field(default_factory=list)
    services: list[ServicePlan] = field(default_factory=list)
    policies: list[NetworkPolicy] = field(default_factory=list)
    traits: NetworkTraits = field(default_factory=NetworkTraits)
    edge: EdgePlan = field(default_factory=EdgePlan)  # what the ingress proxy serves
    unavailable: set[str] = field(default_factory=set)  # nodes the control plane calls NotReady

    def available(self) -> Plan:
        """The plan for the nodes that answer: what a sync can reach while a node is down (its pods, not ready
        already, are left as they are; its machine is not started again)."""
        if not self.unavailable:
            return self
        return replace(self, nodes=[n for n in self.nodes if n.name not in self.unavailable],
                       pods=[p for p in self.pods if p.node not in self.unavailable])

    @property
    def pod_mtu(self) -> int:
        return self.underlay_mtu - self.traits.overhead

    def node(self, name: str) -> NodePlan:
        return next(n for n in self.nodes if n.name == name)

    @property
    def fabrics(self) -> list[FabricPlan]:
        return machines.fabrics(self.topology)

    @property
    def fabric(self) -> FabricPlan:
        """The first host's fabric, which holds the external segment too."""
        return self.fabrics[0]

    @property
    def underlay_mtu(self) -> int:
        """The machines' links: the stitch between hosts takes its overhead from what the hosts' network carries."""
        stitched = len(self.topology.hosts) > 1
        return self.topology.networking.mtu - (STITCH_OVERHEAD if stitched else 0)

    def machines(self) -> list[NodePlan | RouterPlan | ExternalPlan | FabricPlan]:
        """Every container of the lab: nodes, the router, the external hosts, and the fabrics that link them."""
        return [*self.nodes, *([self.router] if self.router else []), *self.externals, *self.fabrics]

    def machine(self, name: str) -> NodePlan | RouterPlan | ExternalPlan | FabricPlan:
        return next(m for m in self.machines() if m.name == name)

    @property
    def underlay6(self) -> IPv6Network | None:
        return machines.underlay_v6(self.underlay) if self.topology.networking.dualStack else None

    def home(self, ipv4: str) -> NodePlan | None:
        """The node whose range holds an address."""
        return next((n for n in self.nodes if ip_address(ipv4) in IPv4Network(n.cidr4)), None)

    def pods_on(self, node: str) -> list[PodPlan]:
        """Asked for every node by every installer: indexed once per list of pods (a lab of 10,000 pods on 250
        nodes would scan 2.5 M pods a sync otherwise)."""
        index = self.__dict__.get("_pods_on")
        if index is None or index[0] is not self.pods or index[1] != len(self.pods):
            by_node: dict[str, list[PodPlan]] = {}
            for p in self.pods:
                by_node.setdefault(p.node, []).append(p)
            index = self.__dict__["_pods_on"] = (self.pods, len(self.pods), by_node)
        return list(index[2].get(node, ()))

    def allocations(self) -> dict[str, dict[str, str]]:
        return {**{p.key: {"node": p.node, "ipv4": p.ipv4} for p in self.pods}, **services.allocations(self.services)}

    def as_json(self) -> dict[str, Any]:
        return {"lab": self.lab, "underlay": str(self.underlay), "nodes": [asdict(n) for n in self.nodes],
                "pods": [{**asdict(p), "ports": [asdict(x) for x in p.ports]} for p in self.pods]}


container_name = machines.container_name


def plan_nodes(topo: Topology, underlay: IPv4Network) -> list[NodePlan]:
    net = topo.networking
    v4 = ipam.node_ranges(net.podCIDR, net.nodeMaskSize, len(topo.nodes))
    v6 = ipam.node_ranges(net.podCIDRv6, net.nodeMaskSizeV6, len(topo.nodes)) if net.dualStack else None
    out = []
    placed = machines.placement(topo)
    for i, spec in enumerate(topo.nodes):
        node = NodePlan(
            name=spec.name, index=i, container=container_name(topo.name, spec.name),
            labels={"kubernetes.io/hostname": spec.name, "kubernetes.io/os": "linux", **spec.labels},
            underlay_ip=str(ipam.underlay_address(underlay, i)), vtep_mac=ipam.vtep_mac(topo.name, spec.name),
            cidr4=str(v4[i]), gateway4=str(ipam.gateway(v4[i])), vtep4=str(ipam.vtep(v4[i])),
            asn=net.bgp.asn + (1 + i if net.bgp.peering == "ebgp" else 0), host=placed[i])
        if v6:
            node.cidr6, node.gateway6, node.vtep6 = str(v6[i]), str(ipam.gateway(v6[i])), str(ipam.vtep(v6[i]))
            node.underlay_ip6 = str(machines.underlay_v6(underlay)[ipam.UNDERLAY_NODE_OFFSET + i])
        out.append(node)
    return out


def _check_references(manifests: list[Manifest], namespaces: set[str], nodes: set[str]) -> None:
    problems: list[Problem] = []
    for m in manifests:
        obj = m.obj
        if isinstance(obj, kube.CLUSTER_SCOPED):
            continue
        ns = obj.metadata.namespace or "default"
        if ns not in namespaces:
            problems.append(m.doc.problem(("metadata", "namespace"),
                                          f"namespace {show(ns)} does not exist (declare a v1 Namespace)"))
        if not isinstance(obj, kube.Pod | kube.Deployment):
            continue
        spec = obj.spec if isinstance(obj, kube.Pod) else obj.spec.template.spec
        base = ("spec",) if isinstance(obj, kube.Pod) else ("spec", "template", "spec")
        if spec.nodeName and spec.nodeName not in nodes:
            problems.append(m.doc.problem((*base, "nodeName"), f"no node named {show(spec.nodeName)} (nodes: "
                                                               f"{', '.join(sorted(nodes))})"))
    if problems:
        raise InvalidInput(problems)


def _blame(pod: PodIntent, manifests: list[Manifest], field: str, reason: str) -> Problem:
    """A problem at the manifest that asked for pod: the Pod itself, or its Deployment (field under the pod
    template's spec, or `replicas` under the Deployment's)."""
    owner = f"{pod.owner.replace('/', f'/{pod.namespace}/')}" if pod.owner else f"Pod/{pod.key}"
    for m in manifests:
        if m.key == owner:
            if field == "replicas":
                path = ("spec", "replicas") if isinstance(m.obj, kube.Deployment) else ("metadata", "name")
            else:
                path = (*(("spec",) if isinstance(m.obj, kube.Pod) else ("spec", "template", "spec")), field)
            return m.doc.problem(path, reason)
    return Problem("", "", reason)


def build(topo: Topology, manifests: list[Manifest], underlay: IPv4Network,
          previous: dict[str, dict[str, str]] | None = None, readiness: dict[str, bool] | None = None,
          traits: NetworkTraits | None = None, control: Control | None = None) -> Plan:
    """Raises InvalidInput (with file and field) when the manifests do not fit the topology. readiness: what
    the agents observed of pods with readiness probes (a probed pod not in it is not ready yet); traits: the
    pod network mode's (from the network registry); control: what the lab's control plane decided."""
    traits = traits or NetworkTraits()
    control = control or Control()
    readiness = readiness or {}
    held = previous or {}
    previous = {k: v for k, v in held.items() if "node" in v}  # pods' entries; Services' are theirs
    nodes = plan_nodes(topo, underlay)
    namespaces = {ns: {kube.METADATA_NAME_LABEL: ns} for ns in kube.BUILTIN_NAMESPACES}
    for m in manifests:
        if isinstance(m.obj, kube.Namespace):
            namespaces[m.obj.metadata.name] = m.obj.metadata.labels
    _check_references(manifests, set(namespaces), {n.name for n in nodes})
    intents = expand([m.obj for m in manifests], control.generations)
    try:
        placement = schedule(intents, {n.name: n.labels for n in nodes},
                             {k: v["node"] for k, v in previous.items()}, control.not_ready)
    except Unschedulable as err:
        raise InvalidInput([_blame(err.pod, manifests, "nodeSelector", str(err))]) from None
    pods: list[PodPlan] = []
    # a pod keeps its address where it is; in a mode that routes pods by their own IP, also on another node
    # (it moved), and then no other pod may get it. Addresses are compared as integers, each node's range
    # looked up by its prefix: a lab of 10,000 pods on 250 nodes is planned in linear time.
    keeps = traits.keeps_ip_on_move
    home = _Ranges(nodes)
    kept = {k: ip for k, v in previous.items() if k in placement and (ip := v["ipv4"])
            and (owner := home.of(ip)) is not None and (keeps or owner.name == placement[k] == v["node"])}
    mine_by: dict[str, list[PodIntent]] = {n.name: [] for n in nodes}
    for p in intents:
        mine_by[placement[p.key]].append(p)
    # addresses of a range held by pods that moved away from it
    reserved_in: dict[str, set[str]] = {n.name: set() for n in nodes}
    for k, ip in kept.items():
        if (owner := home.of(ip)) is not None and owner.name != placement[k]:
            reserved_in[owner.name].add(ip)
    for node in nodes:
        mine = mine_by[node.name]
        taken = {p.key: kept[p.key] for p in mine if p.key in kept}
        try:
            ips = ipam.allocate(IPv4Network(node.cidr4), taken, [p.key for p in mine], reserved_in[node.name])
        except ipam.Exhausted as err:
            pod = next(p for p in mine if p.key == err.key)
            room = ipam.capacity(IPv4Network(node.cidr4))
            raise InvalidInput([_blame(pod, manifests, "replicas",
                                       f"node {node.name} has room for {room} pods ({node.cidr4}) and {pod.key} "
                                       f"does not fit: ask for fewer, or give nodes larger ranges "
                                       f"(networking.nodeMaskSize {topo.networking.nodeMaskSize})")]) from None
        for p in mine:
            at = home.of(ips[p.key]) or node
            v6 = (ipam.mirror_v6(ips[p.key], IPv4Network(at.cidr4), IPv6Network(at.cidr6))
                  if at.cidr6 else None)
            pods.append(PodPlan(p.namespace, p.name, node.name, p.labels, p.ports, ips[p.key], v6, p.owner,
                                routed=at is not node, processes=p.processes, dns=p.dns, probes=p.probes,
                                ready=node.name not in control.not_ready and (
                                    readiness.get(p.key, False) if p.probes else readiness.get(p.key, True)),
                                restart=p.restart, bandwidth=p.bandwidth, lifecycle=p.lifecycle,
                                replica=p.replica))
    order = {p.key: i for i, p in enumerate(intents)}
    pods.sort(key=lambda p: order[p.key])
    planned = services.build(topo, manifests, pods, held)
    return Plan(topo.name, topo, underlay, nodes, pods, namespaces, machines.router(topo, underlay),
                machines.externals(topo), planned, [m.obj for m in manifests if isinstance(m.obj, NetworkPolicy)],
                traits, _edge(manifests, planned, namespaces), set(control.not_ready))


class _Ranges:
    """Which node's pod range holds an address: one dictionary lookup per distinct prefix length."""

    def __init__(self, nodes: list[NodePlan]) -> None:
        self.by: dict[int, dict[int, NodePlan]] = {}
        for n in nodes:
            net = IPv4Network(n.cidr4)
            self.by.setdefault(net.prefixlen, {})[int(net.network_address)] = n

    def of(self, ip: str) -> NodePlan | None:
        value = ipam.v4_int(ip)
        for prefix, nets in self.by.items():
            if (found := nets.get(value & ((0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF))) is not None:
                return found
        return None


def _edge(manifests: list[Manifest], planned: list[ServicePlan], namespaces: dict[str, dict[str, str]]) -> EdgePlan:
    """What the ingress proxy serves: the Ingresses and the Gateway API routes, with their statuses."""
    edge, by_key = EdgePlan(), {s.key: s for s in planned}
    proxy = by_key.get(f"{INGRESS_NAMESPACE}/ingress")
    ingresses.plan(manifests, by_key, proxy.lb_ips if proxy else [], edge)
    gateways.plan(manifests, by_key, namespaces, edge)
    return edge
