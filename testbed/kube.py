"""The Kubernetes objects testbed understands, as typed models: the fields it acts on are checked the way the
API server checks them; other fields of real manifests (images, resources, probes...) are accepted and ignored.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from testbed.errors import show

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


class PodSpec(Loose):
    containers: list[Container] = Field(min_length=1)
    nodeName: str | None = None
    nodeSelector: dict[str, str] = Field(default_factory=dict)
    hostNetwork: bool = False

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


Object = Namespace | Pod | Deployment
KINDS: dict[str, type[Namespace] | type[Pod] | type[Deployment]] = {
    "Namespace": Namespace, "Pod": Pod, "Deployment": Deployment}
BUILTIN_NAMESPACES = ("default", "kube-system")


def key(obj: Object) -> str:
    """kind/namespace/name, the identity `apply` and `delete` work by."""
    ns = "" if isinstance(obj, Namespace) else (obj.metadata.namespace or "default")
    return f"{obj.kind}/{ns}/{obj.metadata.name}"
