"""The topology file: `apiVersion: testbed/v1alpha1`, `kind: Topology`. README.md documents every field."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from testbed.model.hosts import HostSpec, Stitch, check_hosts, check_placement, check_stitch
from testbed.model.labels import lab_name
from testbed.model.names import Labels, dns_label, dns_subdomain

UNDERLAY_POOL = IPv4Network("100.64.0.0/16")  # carrier-grade NAT space: never a real route on a lab machine
MAX_NODES = 250
NODE_LOCAL_DNS = "169.254.20.10"  # NodeLocal DNSCache's link-local address, the add-on's default
UNDERLAY_NODE_OFFSET = 11  # on the underlay, .1 is kept for a lab router, .2-.10 for other lab hosts


def underlay_holds(cidr: IPv4Network) -> int:
    """Nodes an underlay range holds: from .11 up to the address before broadcast."""
    return max(cidr.num_addresses - UNDERLAY_NODE_OFFSET - 1, 0)


def underlay_prefix(nodes: int) -> int:
    """The longest prefix (at most /24) whose range holds that many nodes."""
    prefix = 24
    while underlay_holds(IPv4Network(f"0.0.0.0/{prefix}")) < nodes:
        prefix -= 1
    return prefix
RESERVED_NAMES = ("router", "fabric")  # machine names beside the nodes


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class NodeSpec(Strict):
    name: Annotated[str, AfterValidator(dns_label)] = Field(description="Node name (DNS-1123 label), unique")
    labels: Labels = Field(default_factory=dict, description="Node labels, matched by nodeSelector")
    host: str | None = Field(None, description="The host (of hosts:) it runs on; default: spread evenly")


class Vxlan(Strict):
    vni: int = Field(default=1, ge=1, le=16777215, description="VXLAN network identifier")
    port: int = Field(default=8472, ge=1, le=65535, description="VXLAN UDP port (Flannel uses 8472)")


class Bgp(Strict):
    asn: int = Field(64512, ge=1, le=4294967295, description="The cluster's ASN: every node's with ibgp; the "
                                                           "router's with ebgp, where node i takes asn + 1 + i")
    peering: Literal["ibgp", "ebgp"] = Field("ibgp", description="ibgp: the router is a route reflector")
    holdTime: int = Field(3, ge=3, le=65535, description="BGP hold time in seconds")
    keepalive: int = Field(1, ge=1, le=21845, description="BGP keepalive in seconds (at most holdTime / 3)")

    @model_validator(mode="after")
    def _timers(self) -> Bgp:
        if self.holdTime < 3 * self.keepalive:
            raise ValueError(f"holdTime {self.holdTime} must be at least 3 x keepalive ({3 * self.keepalive})")
        if self.peering == "ebgp" and self.asn + MAX_NODES > 4294967295:
            raise ValueError(f"asn {self.asn} leaves no room for one ASN per node with ebgp")
        return self


class ExternalHost(Strict):
    name: Annotated[str, AfterValidator(dns_label)] = Field(description="Container <lab>-<name>; `testbed exec "
                                                                        "NAME` runs in it")
    role: Literal["dns", "web"] = Field(description="dns: authoritative server for the zone; web: netexec HTTP")


class External(Strict):
    cidr: IPv4Network = Field(IPv4Network("203.0.113.0/24"), description="The segment behind the router "
                                                                         "(TEST-NET-3); the router takes .1")
    cidrV6: IPv6Network = Field(IPv6Network("2001:db8::/64"), description="Its IPv6 range (with dualStack)")
    zone: Annotated[str, AfterValidator(dns_subdomain)] = Field("example.com", description="The zone the dns "
                                                                                          "host serves")
    hosts: list[ExternalHost] = Field(
        default_factory=lambda: [ExternalHost(name="ext1", role="dns"), ExternalHost(name="ext2", role="web")],
        max_length=16, description="External hosts, from .10 of cidr upwards")

    @field_validator("cidr", "cidrV6")
    @classmethod
    def _room(cls, value: IPv4Network | IPv6Network) -> IPv4Network | IPv6Network:
        if value.num_addresses < 32:
            raise ValueError("needs at least 32 addresses, a /27 or a /123 (hosts take the 10th upwards)")
        return value


class KubeProxy(Strict):
    mode: Literal["nftables", "iptables"] = Field("nftables", description="How Services are programmed on "
                                                                         "every node")


class LoadBalancer(Strict):
    pools: list[IPv4Network | IPv6Network] = Field(
        default_factory=list, description="Ranges LoadBalancer Services take their IPs from (in bgp mode the "
                                          "nodes announce them; otherwise one node answers ARP/NDP for each)")


class CniPlugins(Strict):
    conflist: str = Field(description="A CNI conflist (JSON), relative to the topology file; {{podCIDR}}, "
                                      "{{podCIDRv6}} and {{nodeName}} are filled in per node")
    binDir: str = Field(description="The folder of the plugin binaries the conflist names, copied into every node")
    timeout: float = Field(10.0, gt=0, le=300, description="Seconds a plugin may run before it is killed")


class DnsSettings(Strict):
    nodeLocalCache: bool = Field(False, description="NodeLocal DNSCache: a caching server on every node at "
                                                    f"{NODE_LOCAL_DNS}, asked first by the pods, kube-dns second")


class ControlPlane(Strict):
    nodeMonitorGracePeriod: float = Field(4.0, ge=1, le=300, description="Seconds without a node's heartbeat "
                                                                        "before it is NotReady (Kubernetes: 40)")
    podEvictionTimeout: float = Field(10.0, ge=0, le=3600, description="Seconds NotReady before a node's "
                                                                      "Deployment pods are recreated elsewhere "
                                                                      "(Kubernetes: 300)")


class IngressSettings(Strict):
    enabled: Literal["auto"] | bool = Field(
        "auto", description="The ingress proxy (HAProxy pods in testbed-ingress): auto runs it while the lab holds "
                            "an Ingress, a Gateway or a route; true always; false never")
    replicas: int = Field(2, ge=1, le=8, description="Proxy pods, on different nodes while there are enough")


class Networking(Strict):
    podCIDR: IPv4Network = Field(IPv4Network("10.244.0.0/16"), description="IPv4 pod range of the cluster")
    podCIDRv6: IPv6Network = Field(IPv6Network("fd00:10:244::/56"), description="IPv6 pod range (dualStack)")
    serviceCIDR: IPv4Network = Field(IPv4Network("10.96.0.0/16"), description="IPv4 service range")
    serviceCIDRv6: IPv6Network = Field(IPv6Network("fd00:10:96::/112"), description="IPv6 service range")
    nodeMaskSize: int = Field(default=24, ge=8, le=30, description="Prefix length of each node's IPv4 range")
    nodeMaskSizeV6: int = Field(default=64, ge=64, le=126, description="Prefix length of each node's IPv6 range")
    dualStack: bool = Field(False, description="Pods also get an IPv6 address")
    # which modes exist is the network registry's to say: the lab checks the name (testbed.network.registry)
    network: Annotated[str, AfterValidator(dns_label)] = Field("vxlan", description="Pod network between nodes")
    mtu: int = Field(default=1500, ge=1280, le=9000, description="Underlay MTU; pods get mtu minus the "
                                                                 "network's encapsulation (50 for vxlan)")
    clusterDomain: Annotated[str, AfterValidator(dns_subdomain)] = Field("cluster.local", description="The "
                                                                         "cluster DNS zone")
    natOutgoing: bool = Field(True, description="Masquerade pod traffic that leaves the pod and service ranges")
    bgp: Bgp = Field(default_factory=Bgp)
    vxlan: Vxlan = Field(default_factory=Vxlan)
    underlayCIDR: IPv4Network | None = Field(None, description="Underlay range (default: a free /24 of "
                                                                "100.64.0.0/16)")

    @field_validator("underlayCIDR")
    @classmethod
    def _underlay(cls, value: IPv4Network | None) -> IPv4Network | None:
        if value is not None and value.prefixlen > 24:
            raise ValueError("needs at least a /24 (nodes take .11 upwards)")
        return value


def _cluster_ranges(net: Networking) -> list[tuple[str, IPv4Network | IPv6Network]]:
    ranges: list[tuple[str, IPv4Network | IPv6Network]] = [
        ("networking.podCIDR", net.podCIDR), ("networking.serviceCIDR", net.serviceCIDR),
        ("networking.underlayCIDR", net.underlayCIDR or UNDERLAY_POOL)]
    if net.dualStack:
        ranges += [("networking.podCIDRv6", net.podCIDRv6), ("networking.serviceCIDRv6", net.serviceCIDRv6)]
    return ranges


def _apart(what: str, mine: list[IPv4Network | IPv6Network], others: list[tuple[str, Any]]) -> None:
    for cidr in mine:
        for name, other in others:
            if cidr.version == other.version and cidr.overlaps(other):
                raise ValueError(f"{what} {cidr} overlaps {name} {other}")


class Topology(Strict):
    apiVersion: Literal["testbed/v1alpha1"]
    kind: Literal["Topology"]
    name: Annotated[str, AfterValidator(lab_name)] = Field(description="Lab name (DNS-1123 label, <= 20)")
    hosts: list[HostSpec] = Field(default_factory=list, description="The Docker engines the lab runs on; "
                                                                     "default: the local one alone")
    nodes: list[NodeSpec] = Field(min_length=1, max_length=MAX_NODES, description="A node count or a list")
    networking: Networking = Field(default_factory=Networking)
    external: External = Field(default_factory=External)
    kubeProxy: KubeProxy = Field(default_factory=KubeProxy)
    loadBalancer: LoadBalancer = Field(default_factory=LoadBalancer)
    ingress: IngressSettings = Field(default_factory=IngressSettings)
    controlPlane: ControlPlane = Field(default_factory=ControlPlane)
    dns: DnsSettings = Field(default_factory=DnsSettings)
    stitch: Stitch = Field(default_factory=Stitch)
    cni: Literal["builtin", "reference"] | CniPlugins = Field(
        "builtin", description="How pods are wired: builtin (in the node's agent), reference (Debian's CNI "
                               "plugins: bridge, host-local, portmap, bandwidth, tuning) or your own plugins")
    manifests: list[str | dict[str, Any]] = Field(
        default_factory=list, description="Kubernetes manifests: inline objects or file paths")

    @field_validator("nodes", mode="before")
    @classmethod
    def _count(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a node count or a list of nodes")
        if isinstance(value, int):
            if not 1 <= value <= MAX_NODES:
                raise ValueError(f"a node count must be between 1 and {MAX_NODES}")
            return [{"name": f"node{i + 1}"} for i in range(value)]
        return value

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, hosts: list[HostSpec]) -> list[HostSpec]:
        return check_hosts(hosts)

    @field_validator("stitch")
    @classmethod
    def _stitch(cls, stitch: Stitch, info: ValidationInfo) -> Stitch:
        net: Networking | None = info.data.get("networking")
        return stitch if net is None else check_stitch(stitch, net.vxlan.port, net.network)

    @field_validator("nodes")
    @classmethod
    def _unique(cls, nodes: list[NodeSpec], info: ValidationInfo) -> list[NodeSpec]:
        names = [n.name for n in nodes]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"node names must be unique; repeated: {', '.join(sorted(dup))}")
        check_placement(nodes, info.data.get("hosts") or [])
        if taken := sorted(set(names) & set(RESERVED_NAMES)):
            raise ValueError(f"node name(s) {', '.join(taken)} are the lab's own machines' "
                             f"({', '.join(RESERVED_NAMES)}); rename the node")
        return nodes

    @field_validator("networking")
    @classmethod
    def _address_plan(cls, net: Networking, info: ValidationInfo) -> Networking:
        """Checks that need the node count; a field validator (nodes come first) so errors point here."""
        count = len(info.data.get("nodes") or [])
        if net.nodeMaskSize <= net.podCIDR.prefixlen:
            raise ValueError(f"networking.nodeMaskSize {net.nodeMaskSize} must be longer than podCIDR's "
                             f"/{net.podCIDR.prefixlen}")
        if (fit := 2 ** (net.nodeMaskSize - net.podCIDR.prefixlen)) < count:
            raise ValueError(f"networking.podCIDR {net.podCIDR} holds {fit} /{net.nodeMaskSize} node ranges, "
                             f"fewer than the {count} nodes")
        if net.underlayCIDR is not None and (fit := underlay_holds(net.underlayCIDR)) < count:
            raise ValueError(f"networking.underlayCIDR {net.underlayCIDR} holds {fit} nodes (from "
                             f".{UNDERLAY_NODE_OFFSET}), fewer than the {count} nodes: give it a "
                             f"/{underlay_prefix(count)}")
        # the cluster DNS Service takes the 10th address of each service range, as kubeadm picks it
        for name, cidr in [("serviceCIDR", net.serviceCIDR)] + ([("serviceCIDRv6", net.serviceCIDRv6)]
                                                                if net.dualStack else []):
            if cidr.num_addresses < 16:
                raise ValueError(f"networking.{name} {cidr} is too small: it needs at least 16 addresses "
                                 "(the cluster DNS Service takes the 10th)")
        ranges: list[tuple[str, IPv4Network | IPv6Network]] = [
            ("podCIDR", net.podCIDR), ("serviceCIDR", net.serviceCIDR)]
        if net.underlayCIDR:
            ranges.append(("underlayCIDR", net.underlayCIDR))
        if net.dualStack:
            if net.nodeMaskSizeV6 <= net.podCIDRv6.prefixlen:
                raise ValueError(f"networking.nodeMaskSizeV6 {net.nodeMaskSizeV6} must be longer than "
                                 f"podCIDRv6's /{net.podCIDRv6.prefixlen}")
            if (fit := 2 ** (net.nodeMaskSizeV6 - net.podCIDRv6.prefixlen)) < count:
                raise ValueError(f"networking.podCIDRv6 {net.podCIDRv6} holds {fit} node ranges, fewer than the "
                                 f"{count} nodes")
            if 128 - net.nodeMaskSizeV6 < 32 - net.nodeMaskSize:
                raise ValueError("networking.nodeMaskSizeV6 leaves fewer pod addresses than nodeMaskSize")
            ranges += [("podCIDRv6", net.podCIDRv6), ("serviceCIDRv6", net.serviceCIDRv6)]
        for i, (name_a, a) in enumerate(ranges):
            for name_b, b in ranges[i + 1:]:
                if a.version == b.version and a.overlaps(b):  # type: ignore[arg-type]
                    raise ValueError(f"networking.{name_a} {a} overlaps networking.{name_b} {b}")
        return net

    @field_validator("external")
    @classmethod
    def _external(cls, ext: External, info: ValidationInfo) -> External:
        """A field validator (nodes and networking come first) so that errors point at `external`."""
        net: Networking | None = info.data.get("networking")
        if net is None:
            return ext
        names = [n.name for n in info.data.get("nodes") or []] + list(RESERVED_NAMES)
        for i, host in enumerate(ext.hosts):
            if host.name in names:
                raise ValueError(f"external.hosts[{i}].name {host.name!r} is taken by a node, the router, the "
                                 "fabric or another external host")
            names.append(host.name)
        _apart("external range", [ext.cidr, ext.cidrV6], _cluster_ranges(net))
        return ext

    @field_validator("loadBalancer")
    @classmethod
    def _pools(cls, lb: LoadBalancer, info: ValidationInfo) -> LoadBalancer:
        net: Networking | None = info.data.get("networking")
        ext: External | None = info.data.get("external")
        if net is not None and ext is not None:
            _apart("loadBalancer pool", list(lb.pools), [*_cluster_ranges(net), ("external.cidr", ext.cidr),
                                                         ("external.cidrV6", ext.cidrV6)])
        return lb

    def dns_ip(self) -> str:
        """The cluster DNS address pods are given, as kubeadm picks it: the 10th of the service range."""
        return str(self.networking.serviceCIDR[10])

    def dns_servers(self) -> list[str]:
        """What pods ask, in order: the node's cache first when there is one, then kube-dns."""
        return ([NODE_LOCAL_DNS] if self.dns.nodeLocalCache else []) + [self.dns_ip()]


def json_schema(networks: list[str] | None = None) -> dict[str, Any]:
    """networks: the registered pod network modes, which the schema lists (the lab knows them)."""
    schema = Topology.model_json_schema()
    if networks:
        schema["$defs"]["Networking"]["properties"]["network"]["enum"] = sorted(networks)
    # the count form becomes a list before validation, so the schema says both forms are fine
    nodes = schema["properties"]["nodes"]
    as_list = {k: nodes.pop(k) for k in ("type", "items", "minItems", "maxItems")}
    nodes["anyOf"] = [{"type": "integer", "minimum": 1, "maximum": MAX_NODES}, as_list]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
