"""The Kubernetes objects testbed understands, as typed models: the fields it acts on are checked the way the
API server checks them; other fields of real manifests (images, resources, probes...) are accepted and ignored.
"""

from __future__ import annotations

import re
from ipaddress import ip_address
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, IPvAnyAddress, field_validator, model_validator

from testbed.errors import show
from testbed.kube_probe import Probe, port_or_name

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
METADATA_NAME_LABEL = "kubernetes.io/metadata.name"


def dns_label(value: str) -> str:
    if len(value) > 63 or not DNS1123_LABEL.match(value):
        raise ValueError(f"{show(value)} is not a DNS-1123 label (lowercase letters, digits and '-', at most 63)")
    return value


def dns_subdomain(value: str) -> str:
    if len(value) > 253 or not DNS1123_SUBDOMAIN.match(value):
        raise ValueError(f"{show(value)} is not a DNS-1123 subdomain (lowercase letters, digits, '-' and '.')")
    return value


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
            raise ValueError(f"label key {show(key)}: prefix must be a DNS-1123 subdomain")
        if len(name) > 63 or not LABEL_NAME.match(name):
            raise ValueError(f"label key {show(key)}: name must be 1-63 alphanumerics, '-', '_' or '.'")
        if not isinstance(value, str):
            raise ValueError(f"label {show(key)}: value must be a string (quote it in YAML)")
        if value and (len(value) > 63 or not LABEL_NAME.match(value)):
            raise ValueError(f"label {show(key)}: value {show(value)} must be empty or 1-63 alphanumerics, "
                             "'-', '_', '.'")
    return labels


Labels = Annotated[dict[str, str], AfterValidator(check_labels)]


class Loose(BaseModel):
    """Real manifests carry many fields testbed does not act on; accept them."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class ObjectMeta(Loose):
    name: Annotated[str, AfterValidator(dns_subdomain)]
    namespace: Annotated[str, AfterValidator(dns_label)] | None = None
    labels: Labels = Field(default_factory=dict)


class ContainerPort(Loose):
    containerPort: int = Field(ge=1, le=65535)
    name: str | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"

    @field_validator("name")
    @classmethod
    def _iana(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 15 or not IANA_SVC_NAME.match(value) or "--" in value
                                  or not re.search("[a-z]", value)):
            raise ValueError(f"{show(value)} is not an IANA service name (1-15 lowercase alphanumerics or '-', "
                             "with a letter)")
        return value


class Container(Loose):
    name: Annotated[str, AfterValidator(dns_label)]
    image: str | None = None
    ports: list[ContainerPort] = Field(default_factory=list)
    command: list[Annotated[str, Field(strict=True)]] | None = None
    args: list[Annotated[str, Field(strict=True)]] | None = None
    readinessProbe: Probe | None = None

    @model_validator(mode="after")
    def _probe_port(self) -> Container:
        if self.readinessProbe and (name := self.readinessProbe.undeclared_port({p.name for p in self.ports})):
            raise ValueError(f"readinessProbe: port {name!r} is not a named port of container {self.name!r}")
        return self

    def argv(self) -> list[str] | None:
        """What the container runs, from the node image's programs (images are not pulled): command, then args.
        None, and the pod keeps the built-in netexec workload, when there is no command (args alone would go to
        the image's entrypoint, which testbed does not have) or when it is agnhost's netexec, which the
        workload imitates."""
        argv = [*(self.command or []), *(self.args or [])]
        if not self.command or "netexec" in argv or argv[0].rsplit("/", 1)[-1] == "agnhost":
            return None
        return argv


class DNSOption(Loose):
    name: str
    value: str | None = None


class PodDNSConfig(Loose):
    nameservers: list[IPvAnyAddress] = Field(default_factory=list, max_length=3)
    searches: list[str] = Field(default_factory=list, max_length=32)
    options: list[DNSOption] = Field(default_factory=list)


class PodSpec(Loose):
    containers: list[Container] = Field(min_length=1)
    nodeName: str | None = None
    nodeSelector: dict[str, str] = Field(default_factory=dict)
    hostNetwork: bool = False
    hostname: Annotated[str, AfterValidator(dns_label)] | None = None
    subdomain: Annotated[str, AfterValidator(dns_label)] | None = None
    dnsPolicy: Literal["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"] = "ClusterFirst"
    dnsConfig: PodDNSConfig | None = None

    @model_validator(mode="after")
    def _dns(self) -> PodSpec:
        if self.dnsPolicy == "None" and (self.dnsConfig is None or not self.dnsConfig.nameservers):
            raise ValueError("dnsConfig: dnsPolicy None needs dnsConfig with at least one nameserver")
        return self

    @field_validator("hostNetwork")
    @classmethod
    def _own_netns(cls, value: bool) -> bool:
        if value:
            raise ValueError("hostNetwork: true is not supported: every testbed pod gets its own network "
                             "namespace and pod IP (remove the field, or run the command on the node with "
                             "`docker exec`)")
        return value

    @model_validator(mode="after")
    def _unique_ports(self) -> PodSpec:
        seen: set[tuple[int, str]] = set()
        names: set[str] = set()
        for c in self.containers:
            for p in c.ports:
                if (p.containerPort, p.protocol) in seen:
                    raise ValueError(f"containerPort {p.containerPort}/{p.protocol} is declared twice")
                seen.add((p.containerPort, p.protocol))
                if p.name:
                    if p.name in names:
                        raise ValueError(f"port name {p.name!r} is declared twice")
                    names.add(p.name)
        return self

    def ports(self) -> list[ContainerPort]:
        return [p for c in self.containers for p in c.ports]


class Namespace(Loose):
    apiVersion: Literal["v1"]
    kind: Literal["Namespace"]
    metadata: ObjectMeta

    @field_validator("metadata")
    @classmethod
    def _label_name(cls, meta: ObjectMeta) -> ObjectMeta:
        dns_label(meta.name)
        meta.labels = {**meta.labels, METADATA_NAME_LABEL: meta.name}  # as the API server does
        return meta


class Pod(Loose):
    apiVersion: Literal["v1"]
    kind: Literal["Pod"]
    metadata: ObjectMeta
    spec: PodSpec


class Requirement(Loose):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_fit_operator(self) -> Requirement:
        """As the API server validates a LabelSelectorRequirement."""
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"values: must be non-empty when operator is {self.operator}")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"values: must be empty when operator is {self.operator}")
        return self


class LabelSelector(Loose):
    matchLabels: dict[str, str] = Field(default_factory=dict)
    matchExpressions: list[Requirement] = Field(default_factory=list)

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.matchLabels.items()):
            return False
        for r in self.matchExpressions:
            has = r.key in labels
            ok = {"In": has and labels.get(r.key) in r.values,
                  "NotIn": not has or labels.get(r.key) not in r.values,
                  "Exists": has, "DoesNotExist": not has}[r.operator]
            if not ok:
                return False
        return True


class TemplateMeta(Loose):
    labels: Labels = Field(default_factory=dict)


class PodTemplate(Loose):
    metadata: TemplateMeta = Field(default_factory=TemplateMeta)
    spec: PodSpec


class DeploymentSpec(Loose):
    replicas: int = Field(default=1, ge=0, le=10000)
    selector: LabelSelector
    template: PodTemplate

    @model_validator(mode="after")
    def _selector_matches(self) -> DeploymentSpec:
        if not self.selector.matchLabels and not self.selector.matchExpressions:
            raise ValueError("selector: must not be empty")
        if not self.selector.matches(self.template.metadata.labels):
            raise ValueError("selector does not match template labels (the API server rejects this)")
        return self


class Deployment(Loose):
    apiVersion: Literal["apps/v1"]
    kind: Literal["Deployment"]
    metadata: ObjectMeta
    spec: DeploymentSpec


NODE_PORTS = (30000, 32767)


class ServicePort(Loose):
    name: str | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    port: int = Field(ge=1, le=65535)
    targetPort: int | str | None = None
    nodePort: int | None = None

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


class ServiceSpec(Loose):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"] = "ClusterIP"
    selector: dict[str, str] | None = None
    ports: list[ServicePort] = Field(default_factory=list)
    clusterIP: str | None = None
    clusterIPs: list[str] = Field(default_factory=list)
    externalName: str | None = None
    externalIPs: list[IPvAnyAddress] = Field(default_factory=list)
    loadBalancerIP: IPvAnyAddress | None = None
    sessionAffinity: Literal["None", "ClientIP"] = "None"
    sessionAffinityConfig: AffinityConfig = Field(default_factory=AffinityConfig)
    externalTrafficPolicy: Literal["Cluster", "Local"] = "Cluster"
    internalTrafficPolicy: Literal["Cluster", "Local"] = "Cluster"
    trafficDistribution: Literal["PreferClose", "PreferSameZone", "PreferSameNode"] | None = None
    publishNotReadyAddresses: bool = False
    allocateLoadBalancerNodePorts: bool = True
    ipFamilies: list[Literal["IPv4", "IPv6"]] = Field(default_factory=list, max_length=2)
    ipFamilyPolicy: Literal["SingleStack", "PreferDualStack", "RequireDualStack"] | None = None

    @field_validator("clusterIP")
    @classmethod
    def _cluster_ip(cls, value: str | None) -> str | None:
        if value in (None, "", "None"):
            return value or None
        try:
            return str(ip_address(value))
        except ValueError:
            raise ValueError(f"{show(value)} is neither an IP address nor None") from None

    @field_validator("clusterIPs")
    @classmethod
    def _cluster_ips(cls, values: list[str]) -> list[str]:
        return [v if v == "None" else cls._cluster_ip(v) or "" for v in values]

    @model_validator(mode="after")
    def _consistent(self) -> ServiceSpec:
        """What the API server checks for these fields."""
        seen: set[tuple[int, str]] = set()
        names: set[str] = set()
        for p in self.ports:
            if (p.port, p.protocol) in seen:
                raise ValueError(f"ports: port {p.port}/{p.protocol} is declared twice")
            seen.add((p.port, p.protocol))
            if p.name in names:
                raise ValueError(f"ports: port name {p.name!r} is declared twice")
            if p.name:
                names.add(p.name)
            if len(self.ports) > 1 and not p.name:
                raise ValueError("ports: every port needs a name when there are several")
            if p.nodePort is not None and self.type not in ("NodePort", "LoadBalancer"):
                raise ValueError(f"ports: nodePort is only for type NodePort or LoadBalancer, not {self.type}")
        if self.type == "ExternalName":
            if not self.externalName:
                raise ValueError("externalName: required for type ExternalName")
            dns_subdomain(self.externalName.rstrip("."))
            if self.selector:
                raise ValueError("selector: must not be set for type ExternalName")
        elif self.externalName:
            raise ValueError(f"externalName: only for type ExternalName, not {self.type}")
        if self.headless and self.type != "ClusterIP":
            raise ValueError(f"clusterIP: None (headless) is only for type ClusterIP, not {self.type}")
        if len(set(self.ipFamilies)) != len(self.ipFamilies):
            raise ValueError("ipFamilies: a family is listed twice")
        if self.ipFamilyPolicy == "SingleStack" and len(self.ipFamilies) > 1:
            raise ValueError("ipFamilies: SingleStack takes one family")
        return self

    @property
    def headless(self) -> bool:
        return self.clusterIP == "None"


class Service(Loose):
    apiVersion: Literal["v1"]
    kind: Literal["Service"]
    metadata: ObjectMeta
    spec: ServiceSpec = Field(default_factory=ServiceSpec)


class EndpointConditions(Loose):
    ready: bool = True


class Endpoint(Loose):
    addresses: list[IPvAnyAddress] = Field(min_length=1, max_length=100)
    conditions: EndpointConditions = Field(default_factory=EndpointConditions)
    nodeName: str | None = None
    hostname: str | None = None


class EndpointPort(Loose):
    name: str | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    port: int = Field(ge=1, le=65535)


class EndpointSlice(Loose):
    """For a Service with no selector, as users give them (label kubernetes.io/service-name)."""

    apiVersion: Literal["discovery.k8s.io/v1"]
    kind: Literal["EndpointSlice"]
    metadata: ObjectMeta
    addressType: Literal["IPv4", "IPv6"]
    endpoints: list[Endpoint] = Field(default_factory=list)
    ports: list[EndpointPort] = Field(default_factory=list)

    @field_validator("metadata")
    @classmethod
    def _service_label(cls, meta: ObjectMeta) -> ObjectMeta:
        if SERVICE_NAME_LABEL not in meta.labels:
            raise ValueError(f"labels: {SERVICE_NAME_LABEL} must name the Service this slice belongs to")
        return meta


SERVICE_NAME_LABEL = "kubernetes.io/service-name"
Object = Namespace | Pod | Deployment | Service | EndpointSlice
KINDS: dict[str, type[Object]] = {"Namespace": Namespace, "Pod": Pod, "Deployment": Deployment, "Service": Service,
                                  "EndpointSlice": EndpointSlice}
BUILTIN_NAMESPACES = ("default", "kube-system")


def key(obj: Object) -> str:
    """kind/namespace/name, the identity `apply` and `delete` work by."""
    ns = "" if isinstance(obj, Namespace) else (obj.metadata.namespace or "default")
    return f"{obj.kind}/{ns}/{obj.metadata.name}"
