"""Services and EndpointSlices, as ValidateService and ValidateEndpointSlice check them: a Service's name is a
DNS-1035 label; its ports, cluster IPs and IP families, traffic policies, affinity and the fields each type
allows; a slice's addresses for its address type, its endpoints' names and its ports."""

from __future__ import annotations

from ipaddress import ip_address
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, IPvAnyAddress, field_validator, model_validator

from testbed.errors import show
from testbed.model.meta import Loose, ObjectMeta
from testbed.model.names import (
    At,
    Labels,
    at,
    dns1035_label,
    dns_label,
    dns_subdomain,
    port_or_name,
    qualified_name,
    unicast_ip,
)

NODE_PORTS = (30000, 32767)
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
Protocol = Literal["TCP", "UDP", "SCTP"]


class ServicePort(Loose):
    name: Annotated[str, AfterValidator(dns_label)] | None = None
    protocol: Protocol = "TCP"
    port: int = Field(ge=1, le=65535)
    targetPort: int | str | None = None
    nodePort: int | None = None
    appProtocol: Annotated[str, AfterValidator(qualified_name)] | None = None

    @field_validator("targetPort")
    @classmethod
    def _target(cls, value: int | str | None) -> int | str | None:
        return None if value is None else port_or_name(value)

    @field_validator("nodePort")
    @classmethod
    def _range(cls, value: int | None) -> int | None:
        if value is not None and not NODE_PORTS[0] <= value <= NODE_PORTS[1]:
            raise ValueError(f"{value} is outside the node port range {NODE_PORTS[0]}-{NODE_PORTS[1]}")
        return value

    def target(self) -> int | str:
        return self.targetPort if self.targetPort is not None else self.port


class ClientIPConfig(Loose):
    timeoutSeconds: int = Field(10800, ge=1, le=86400)


class AffinityConfig(Loose):
    clientIP: ClientIPConfig = Field(default_factory=ClientIPConfig)


def _cluster_ip(value: str) -> str:
    if value == "None":
        return value
    try:
        return str(ip_address(value))
    except ValueError:
        raise ValueError(f"{show(value)} is neither an IP address nor None") from None


class ServiceSpec(Loose):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"] = "ClusterIP"
    selector: Labels | None = None
    ports: list[ServicePort] = Field(default_factory=list)
    clusterIP: Annotated[str, AfterValidator(_cluster_ip)] | None = None
    clusterIPs: list[Annotated[str, AfterValidator(_cluster_ip)]] = Field(default_factory=list)
    externalName: str | None = None
    externalIPs: list[Annotated[IPvAnyAddress, AfterValidator(unicast_ip)]] = Field(default_factory=list)
    loadBalancerIP: IPvAnyAddress | None = None
    loadBalancerClass: Annotated[str, AfterValidator(qualified_name)] | None = None
    loadBalancerSourceRanges: list[str] | None = None
    sessionAffinity: Literal["None", "ClientIP"] = "None"
    sessionAffinityConfig: AffinityConfig | None = None
    externalTrafficPolicy: Literal["Cluster", "Local"] | None = None
    internalTrafficPolicy: Literal["Cluster", "Local"] = "Cluster"
    healthCheckNodePort: int | None = Field(None, ge=1, le=65535)
    trafficDistribution: Literal["PreferClose", "PreferSameZone", "PreferSameNode"] | None = None
    publishNotReadyAddresses: bool = False
    allocateLoadBalancerNodePorts: bool | None = None
    ipFamilies: list[Literal["IPv4", "IPv6"]] = Field(default_factory=list, max_length=2)
    ipFamilyPolicy: Literal["SingleStack", "PreferDualStack", "RequireDualStack"] | None = None

    @field_validator("clusterIP", mode="before")
    @classmethod
    def _unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _consistent(self) -> ServiceSpec:
        """What ValidateService checks across fields, field by field in its order."""
        self._check_ports()
        if self.type == "ExternalName":
            self._check_external_name()
        else:
            self._check_cluster_ips()
        if self.externalName and self.type != "ExternalName":
            raise At(("externalName",), f"only for type ExternalName, not {self.type}")
        if self.headless and self.type in ("NodePort", "LoadBalancer"):
            raise At(("clusterIP",), f"may not be set to 'None' for {self.type} services")
        if self.sessionAffinity == "None" and self.sessionAffinityConfig is not None:
            raise At(("sessionAffinityConfig",), "must not be set when session affinity is None")
        if self.type != "LoadBalancer":
            for name in ("loadBalancerSourceRanges", "allocateLoadBalancerNodePorts", "loadBalancerClass"):
                if getattr(self, name) is not None:
                    raise At((name,), "may only be used when `type` is 'LoadBalancer'")
        self._check_source_ranges()
        if not self.externally_accessible and self.externalTrafficPolicy is not None:
            raise At(("externalTrafficPolicy",), f"may only be set for externally-accessible services (type "
                                                 f"NodePort or LoadBalancer, or with externalIPs), not type "
                                                 f"{self.type}" + (" without externalIPs" if self.type ==
                                                                   "ClusterIP" else ""))
        if self.healthCheckNodePort is not None and not (self.type == "LoadBalancer" and self.external_local):
            raise At(("healthCheckNodePort",), "may only be set when `type` is 'LoadBalancer' and "
                                               "`externalTrafficPolicy` is 'Local'")
        return self

    def _check_ports(self) -> None:
        if not self.ports and not self.headless and self.type != "ExternalName":
            raise At(("ports",), "Required value: a Service needs at least one port (unless headless or "
                                 "ExternalName)")
        names: set[str] = set()
        seen: set[tuple[int, str]] = set()
        node_ports: set[tuple[int, str]] = set()
        for i, p in enumerate(self.ports):
            if len(self.ports) > 1 and not p.name:
                raise At(("ports", i, "name"), "Required value: every port needs a name when there are several")
            if p.name in names:
                raise At(("ports", i, "name"), f"Duplicate value: {p.name!r}")
            if p.name:
                names.add(p.name)
            if (p.port, p.protocol) in seen:
                raise At(("ports", i), f"Duplicate value: port {p.port}/{p.protocol} is declared twice")
            seen.add((p.port, p.protocol))
            if p.nodePort is not None:
                if self.type not in ("NodePort", "LoadBalancer"):
                    raise At(("ports", i, "nodePort"), f"may not be used when `type` is {self.type!r}")
                if (p.nodePort, p.protocol) in node_ports:
                    raise At(("ports", i, "nodePort"), f"Duplicate value: {p.nodePort}")
                node_ports.add((p.nodePort, p.protocol))

    def _check_external_name(self) -> None:
        for name in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            if getattr(self, name):
                raise At((name,), "may not be set for ExternalName services")
        if not self.externalName:
            raise At(("externalName",), "Required value: for type ExternalName")
        at(("externalName",), dns_subdomain, self.externalName.removesuffix("."))

    def _check_cluster_ips(self) -> None:
        ips = self.clusterIPs
        if self.clusterIP and ips and ips[0] != self.clusterIP:
            raise At(("clusterIPs",), f"first value must match `clusterIP` ({self.clusterIP})")
        if len(ips) > 2:
            raise At(("clusterIPs",), "may only hold up to 2 values")
        if "None" in ips and len(ips) > 1:
            raise At(("clusterIPs",), "'None' must be the first and only value")
        if len(ips) == 2 and ip_address(ips[0]).version == ip_address(ips[1]).version:
            raise At(("clusterIPs",), "may specify no more than one IP for each IP family")
        if len(set(self.ipFamilies)) != len(self.ipFamilies):
            raise At(("ipFamilies",), "Duplicate value: a family is listed twice")
        if self.ipFamilyPolicy == "SingleStack" and len(self.ipFamilies) > 1:
            raise At(("ipFamilies",), "SingleStack takes one family")
        if not self.headless:
            for i, (ip, family) in enumerate(zip(ips, self.ipFamilies, strict=False)):
                if ip_address(ip).version != (4 if family == "IPv4" else 6):
                    raise At(("clusterIPs", i), f"expected an {family} value as indicated by `ipFamilies[{i}]`")

    def _check_source_ranges(self) -> None:
        from ipaddress import ip_network

        for i, cidr in enumerate(self.loadBalancerSourceRanges or []):
            try:
                ip_network(cidr.strip(), strict=False)
            except ValueError:
                raise At(("loadBalancerSourceRanges", i), f"{show(cidr)} is not a CIDR") from None

    @property
    def headless(self) -> bool:
        return self.clusterIP == "None" or self.clusterIPs[:1] == ["None"]

    @property
    def externally_accessible(self) -> bool:
        """apiservice.ExternallyAccessible: NodePort, LoadBalancer, or a ClusterIP Service with externalIPs."""
        return self.type in ("NodePort", "LoadBalancer") or (self.type == "ClusterIP" and bool(self.externalIPs))

    @property
    def external_local(self) -> bool:
        return self.externalTrafficPolicy == "Local"

    @property
    def allocates_node_ports(self) -> bool:
        return self.type == "NodePort" or (self.type == "LoadBalancer" and self.allocateLoadBalancerNodePorts
                                           is not False)

    @property
    def affinity_timeout(self) -> int | None:
        if self.sessionAffinity != "ClientIP":
            return None
        return (self.sessionAffinityConfig or AffinityConfig()).clientIP.timeoutSeconds

    def asked_ips(self) -> list[str]:
        """The cluster IPs it asks for: clusterIP, and clusterIPs (one per family)."""
        if self.headless:
            return []
        return list(dict.fromkeys(ip for ip in [self.clusterIP, *self.clusterIPs] if ip and ip != "None"))


class Service(Loose):
    apiVersion: Literal["v1"]
    kind: Literal["Service"]
    metadata: ObjectMeta
    spec: ServiceSpec = Field(default_factory=ServiceSpec)

    @field_validator("metadata")
    @classmethod
    def _dns1035(cls, meta: ObjectMeta) -> ObjectMeta:
        """ValidateServiceName: the name becomes a DNS label and an environment variable prefix."""
        at(("name",), dns1035_label, meta.name)
        return meta


class EndpointConditions(Loose):
    ready: bool = True
    serving: bool | None = None
    terminating: bool | None = None


class Endpoint(Loose):
    addresses: list[str] = Field(min_length=1, max_length=100)
    conditions: EndpointConditions = Field(default_factory=EndpointConditions)
    nodeName: Annotated[str, AfterValidator(dns_subdomain)] | None = None
    hostname: Annotated[str, AfterValidator(dns_label)] | None = None
    zone: str | None = None


class EndpointPort(Loose):
    name: Annotated[str, AfterValidator(dns_label)] | None = None
    protocol: Protocol = "TCP"
    port: int = Field(ge=1, le=65535)
    appProtocol: Annotated[str, AfterValidator(qualified_name)] | None = None


class EndpointSlice(Loose):
    """For a Service with no selector, as users give them (label kubernetes.io/service-name)."""

    apiVersion: Literal["discovery.k8s.io/v1"]
    kind: Literal["EndpointSlice"]
    metadata: ObjectMeta
    addressType: Literal["IPv4", "IPv6"]
    endpoints: list[Endpoint] = Field(default_factory=list, max_length=1000)
    ports: list[EndpointPort] = Field(default_factory=list, max_length=20000)

    @field_validator("metadata")
    @classmethod
    def _service_label(cls, meta: ObjectMeta) -> ObjectMeta:
        if SERVICE_NAME_LABEL not in meta.labels:
            raise At(("labels",), f"{SERVICE_NAME_LABEL} must name the Service this slice belongs to")
        return meta

    @field_validator("addressType", mode="before")
    @classmethod
    def _fqdn(cls, value: object) -> object:
        if value == "FQDN":
            raise ValueError("FQDN slices are deprecated and not supported: use IPv4 or IPv6")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> EndpointSlice:
        version = 4 if self.addressType == "IPv4" else 6
        for i, e in enumerate(self.endpoints):
            for j, raw in enumerate(e.addresses):
                where = ("endpoints", i, "addresses", j)
                try:
                    ip = ip_address(raw)
                except ValueError:
                    raise At(where, f"{show(raw)} is not an IP address") from None
                if ip.version != version:
                    raise At(where, f"{raw} is not an {self.addressType} address (addressType {self.addressType})")
                try:
                    e.addresses[j] = unicast_ip(ip)
                except ValueError as err:
                    raise At(where, str(err)) from None
        names: set[str] = set()
        for i, p in enumerate(self.ports):
            if (p.name or "") in names:
                raise At(("ports", i, "name"), f"Duplicate value: {p.name or ''!r}")
            names.add(p.name or "")
        return self
