"""Services, planned: ClusterIPs, NodePorts and LoadBalancer IPs allocated (kept across syncs, freed on delete),
and endpoints computed from selectors and pod readiness (or taken from EndpointSlices for a Service with no
selector), with named target ports resolved per pod. Pure: no I/O, unit-tested."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

from testbed.errors import InvalidInput, Problem
from testbed.model import kube
from testbed.model.loader import Manifest
from testbed.model.topology import Topology

DNS_OFFSET = 10  # kube-dns takes the 10th address, as kubeadm sets it
FIRST_OFFSET = 11  # .1 is the API server's by convention; dynamic allocation starts above the DNS address


@dataclass
class PortPlan:
    name: str | None
    protocol: str
    port: int
    target: int | str
    node_port: int | None = None

    @property
    def key(self) -> str:
        return self.name or f"{self.port}/{self.protocol}"


@dataclass
class EndpointPlan:
    ips: list[str]  # v4 first
    node: str | None
    pod: str | None  # ns/name of the pod behind it
    ready: bool
    ports: dict[str, int]  # service port key → the port the endpoint listens on
    hostname: str | None = None


@dataclass
class ServicePlan:
    namespace: str
    name: str
    type: str
    cluster_ips: list[str]
    ports: list[PortPlan]
    endpoints: list[EndpointPlan] = field(default_factory=list)
    external_ips: list[str] = field(default_factory=list)
    lb_ips: list[str] = field(default_factory=list)
    external_name: str | None = None
    headless: bool = False
    affinity_timeout: int | None = None
    external_local: bool = False
    internal_local: bool = False
    publish_not_ready: bool = False
    distribution: str | None = None  # trafficDistribution; PreferClose is PreferSameZone's old name
    selector: dict[str, str] | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def ready_endpoints(self, port: PortPlan) -> list[EndpointPlan]:
        return [e for e in self.endpoints if (e.ready or self.publish_not_ready) and port.key in e.ports]


def _families(svc: kube.Service, topo: Topology, m: Manifest) -> list[int]:
    spec, dual = svc.spec, topo.networking.dualStack
    wanted = [4 if f == "IPv4" else 6 for f in spec.ipFamilies]
    for f in wanted:
        if f == 6 and not dual:
            raise InvalidInput([m.doc.problem(("spec", "ipFamilies"), "IPv6 is not available: the lab is not "
                                                                        "dualStack")])
    if spec.ipFamilyPolicy == "RequireDualStack" and not dual:
        raise InvalidInput([m.doc.problem(("spec", "ipFamilyPolicy"), "RequireDualStack needs a dualStack lab")])
    if not wanted:
        wanted = [4]
    if spec.ipFamilyPolicy in ("PreferDualStack", "RequireDualStack") and dual and len(wanted) == 1:
        wanted.append(6 if wanted[0] == 4 else 4)
    return wanted


class _Pool:
    """Lowest-free allocation from ranges, with addresses already held kept and requested ones checked; each
    address remembers the Service that holds it, for errors that name it."""

    def __init__(self, ranges: list[IPv4Network | IPv6Network], skip_below: int = 0) -> None:
        self.ranges, self.skip, self.used = ranges, skip_below, dict[str, str]()

    def holds(self, ip: str) -> bool:
        return any(ip_address(ip) in r for r in self.ranges if r.version == ip_address(ip).version)

    def take(self, ip: str, owner: str = "") -> str | None:
        """None when taken now (or already by owner); otherwise the Service that holds it."""
        holder = self.used.setdefault(ip, owner)
        return None if holder == owner else holder

    def next(self, version: int) -> str | None:
        for r in self.ranges:
            if r.version != version:
                continue
            last = r.num_addresses - (1 if version == 4 and r.num_addresses > 2 else 0)
            first = max(self.skip, 1 if r.num_addresses > 2 else 0)
            for i in range(first, last):
                ip = str(r[i])
                if ip not in self.used:
                    self.used[ip] = ""
                    return ip
        return None


def build(topo: Topology, manifests: list[Manifest], pods: list, previous: dict[str, dict[str, str]]) -> \
        list[ServicePlan]:
    """Raises InvalidInput naming the manifest, the field and the reason."""
    net = topo.networking
    services = [m for m in manifests if isinstance(m.obj, kube.Service)]
    slices = [m.obj for m in manifests if isinstance(m.obj, kube.EndpointSlice)]
    ranges = [net.serviceCIDR] + ([net.serviceCIDRv6] if net.dualStack else [])
    cluster_pool = _Pool(ranges, FIRST_OFFSET)
    lb_pool = _Pool(list(topo.loadBalancer.pools))
    node_ports: set[int] = set()
    problems: list[Problem] = []
    # first what is asked for or already held, so a later Service cannot take it; testbed's own Services (the
    # cluster DNS's) before the user's: their addresses are reserved
    for m in sorted(services, key=lambda m: m.origin != "addon"):
        svc, prev = m.obj, previous.get(m.key, {})
        assert isinstance(svc, kube.Service)
        requested = svc.spec.asked_ips()
        owner = f"{svc.metadata.namespace or 'default'}/{svc.metadata.name}"
        for ip in requested + [v for k, v in prev.items() if k.startswith("clusterIP") and v not in requested]:
            where = ("spec", "clusterIP") if ip == svc.spec.clusterIP or ip not in svc.spec.clusterIPs else \
                ("spec", "clusterIPs", svc.spec.clusterIPs.index(ip))
            if not cluster_pool.holds(ip):
                if ip in requested:
                    problems.append(m.doc.problem(where, f"{ip} is outside the service range "
                                                         f"({', '.join(map(str, ranges))})"))
            elif (holder := cluster_pool.take(ip, owner)) is not None and ip in requested:
                reserved = ip in (str(r[DNS_OFFSET]) for r in ranges)
                problems.append(m.doc.problem(where, f"{ip} is reserved for the cluster DNS (Service {holder} "
                                                     "holds the 10th address of the service range); leave it "
                                                     "unset or choose another" if reserved else
                                              f"{ip} is already taken by Service {holder}"))
        for i, p in enumerate(svc.spec.ports):
            held = prev.get(f"nodePort/{p.name or i}")
            number = p.nodePort or (int(held) if held else None)
            if number is not None:
                if number in node_ports and p.nodePort:
                    problems.append(m.doc.problem(("spec", "ports", i, "nodePort"),
                                                  f"{number} is already taken by another Service"))
                node_ports.add(number)
        if svc.spec.loadBalancerIP and not lb_pool.holds(str(svc.spec.loadBalancerIP)):
            problems.append(m.doc.problem(("spec", "loadBalancerIP"), f"{svc.spec.loadBalancerIP} is in no "
                                                                      "loadBalancer.pools range"))
        for k, v in prev.items():
            if k.startswith("lb") and lb_pool.holds(v):
                lb_pool.take(v)
        if svc.spec.loadBalancerIP:
            lb_pool.take(str(svc.spec.loadBalancerIP))
    if problems:
        raise InvalidInput(problems)
    index = _by_label(pods)
    return [_plan(m, topo, pods, index, slices, previous.get(m.key, {}), cluster_pool, lb_pool, node_ports)
            for m in services]


def _by_label(pods: list) -> dict[tuple[str, str, str], list]:
    """(namespace, label, value) → the pods that carry it, in the pods' order: a selector then looks only at
    the pods of its rarest label (1,000 Services over 10,000 pods were 10 million label comparisons)."""
    out: dict[tuple[str, str, str], list] = {}
    for pod in pods:
        for k, v in pod.labels.items():
            out.setdefault((pod.namespace, k, v), []).append(pod)
    return out


def _plan(m: Manifest, topo: Topology, pods: list, index: dict[tuple[str, str, str], list],
          slices: list[kube.EndpointSlice], prev: dict[str, str], cluster_pool: _Pool, lb_pool: _Pool,
          node_ports: set[int]) -> ServicePlan:
    svc = m.obj
    assert isinstance(svc, kube.Service)
    spec, ns = svc.spec, svc.metadata.namespace or "default"
    families = _families(svc, topo, m)
    cluster_ips: list[str] = []
    if spec.type != "ExternalName" and not spec.headless:
        for version in families:
            held = next((v for k, v in prev.items() if k.startswith("clusterIP") and ip_address(v).version == version
                         and v in cluster_pool.used), None)
            asked = next((ip for ip in spec.asked_ips() if ip_address(ip).version == version), None)
            ip = asked or held or cluster_pool.next(version)
            if ip is None:
                raise InvalidInput([m.doc.problem(("spec",), f"the service range has no IPv{version} address left")])
            cluster_ips.append(ip)
    ports = []
    for i, p in enumerate(spec.ports):
        number = None
        if spec.allocates_node_ports:
            held = prev.get(f"nodePort/{p.name or i}")
            number = p.nodePort or (int(held) if held else None)
            if number is None:
                number = next((n for n in range(kube.NODE_PORTS[0], kube.NODE_PORTS[1] + 1) if n not in node_ports),
                              None)
                if number is None:
                    raise InvalidInput([m.doc.problem(("spec", "ports", i), "no node port left")])
                node_ports.add(number)
        ports.append(PortPlan(p.name, p.protocol, p.port, p.target(), number))
    lb_ips: list[str] = []
    if spec.type == "LoadBalancer":
        if not topo.loadBalancer.pools:
            raise InvalidInput([m.doc.problem(("spec", "type"), "LoadBalancer needs an address pool: declare "
                                                                "loadBalancer.pools in the topology")])
        for version in families:
            held = next((v for k, v in prev.items() if k.startswith("lb") and ip_address(v).version == version),
                        None)
            asked = str(spec.loadBalancerIP) if spec.loadBalancerIP and spec.loadBalancerIP.version == version \
                else None
            ip = asked or held or lb_pool.next(version)
            if ip is not None:
                lb_ips.append(ip)
        if not lb_ips:
            raise InvalidInput([m.doc.problem(("spec", "type"), "the loadBalancer pools have no address left")])
    out = ServicePlan(ns, svc.metadata.name, spec.type, cluster_ips, ports,
                      external_ips=[str(ip) for ip in spec.externalIPs], lb_ips=lb_ips,
                      external_name=spec.externalName, headless=spec.headless,
                      affinity_timeout=spec.affinity_timeout, external_local=spec.external_local,
                      internal_local=spec.internalTrafficPolicy == "Local",
                      publish_not_ready=spec.publishNotReadyAddresses,
                      distribution="PreferSameZone" if spec.trafficDistribution == "PreferClose"
                      else spec.trafficDistribution, selector=spec.selector or None)
    if spec.type == "ExternalName":  # a CNAME: no endpoints, whatever its selector says
        return out
    if spec.selector:
        out.endpoints = _from_pods(spec.selector, ns, ports, index, svc.metadata.name)
    else:
        out.endpoints = _from_slices(svc.metadata.name, ns, ports, slices, pods)
    return out


def _from_pods(selector: dict[str, str], ns: str, ports: list[PortPlan], index: dict[tuple[str, str, str], list],
               service: str) -> list[EndpointPlan]:
    out = []
    candidates = min((index.get((ns, k, v), []) for k, v in selector.items()), key=len)
    for pod in candidates:
        if any(pod.labels.get(k) != v for k, v in selector.items()):
            continue
        resolved: dict[str, int] = {}
        for p in ports:
            if isinstance(p.target, int):
                resolved[p.key] = p.target
            else:
                named = next((x.port for x in pod.ports if x.name == p.target and x.protocol == p.protocol), None)
                if named is not None:
                    resolved[p.key] = named
        ips = [ip for ip in (pod.ipv4, pod.ipv6) if ip]
        # an endpoint has a hostname (a DNS name under the Service) when its pod asks for one in this subdomain
        host = pod.dns.get("hostname") if pod.dns.get("subdomain") == service else None
        out.append(EndpointPlan(ips, pod.node, pod.key, pod.ready, resolved, host))
    return out


def _from_slices(name: str, ns: str, ports: list[PortPlan], slices: list[kube.EndpointSlice],
                 pods: list) -> list[EndpointPlan]:
    by_ip = {ip: pod for pod in pods for ip in (pod.ipv4, pod.ipv6) if ip}
    out = []
    for s in slices:
        if s.metadata.labels.get(kube.SERVICE_NAME_LABEL) != name or (s.metadata.namespace or "default") != ns:
            continue
        numbers = {p.name or "": p.port for p in s.ports}
        resolved = {p.key: numbers[p.name or ""] for p in ports if (p.name or "") in numbers}
        for e in s.endpoints:
            ips = [str(a) for a in e.addresses]
            pod = by_ip.get(ips[0])
            out.append(EndpointPlan(ips, e.nodeName or (pod.node if pod else None), pod.key if pod else None,
                                    e.conditions.ready, resolved, e.hostname))
    return out


def allocations(services: list[ServicePlan]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for s in services:
        held: dict[str, str] = {}
        for ip in s.cluster_ips:
            held[f"clusterIP{ip_network(ip).version}"] = ip
        for i, p in enumerate(s.ports):
            if p.node_port:
                held[f"nodePort/{p.name or i}"] = str(p.node_port)
        for ip in s.lb_ips:
            held[f"lb{ip_network(ip).version}"] = ip
        out[f"Service/{s.key}"] = held
    return out


def l2_holders(services: list[ServicePlan], nodes: list[str]) -> dict[str, str]:
    """LoadBalancer IP → the node that answers ARP/NDP for it (MetalLB's L2 mode): a node with a local endpoint
    when the policy is Local, otherwise one picked by a hash of the IP, so it stays put across syncs."""
    out: dict[str, str] = {}
    for svc in services:
        local = sorted({e.node for e in svc.endpoints if e.node})
        for ip in svc.lb_ips:
            pool = local if svc.external_local and local else nodes
            out[ip] = pool[int(hashlib.sha256(ip.encode()).hexdigest(), 16) % len(pool)]
    return out


def announced_lb(services: list[ServicePlan], node: str) -> list[str]:
    """LoadBalancer IPs a node announces by BGP (MetalLB's BGP mode): all of them, or with
    externalTrafficPolicy Local only those with an endpoint on the node."""
    out = []
    for svc in services:
        if svc.external_local and not any(e.node == node for e in svc.endpoints):
            continue
        out += [f"{ip}/{32 if ip_address(ip).version == 4 else 128}" for ip in svc.lb_ips]
    return out
