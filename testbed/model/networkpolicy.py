"""The NetworkPolicy object, checked as the API server checks it: selector operators, CIDRs and their
`except`, port ranges, protocols and policyTypes. Defaults (policyTypes) are filled in as the API server
fills them."""

from __future__ import annotations

from ipaddress import ip_network
from typing import Literal

from pydantic import Field, field_validator, model_validator

from testbed.errors import show
from testbed.model.meta import LabelSelector, Loose, ObjectMeta
from testbed.model.names import At, port_or_name


class IPBlock(Loose):
    cidr: str
    except_: list[str] = Field(default_factory=list, alias="except")

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            return str(ip_network(value, strict=False))
        except ValueError:
            raise ValueError(f"{show(value)} is not a CIDR (address/prefix)") from None

    @model_validator(mode="after")
    def _inside(self) -> IPBlock:
        """Each except must be a strict subset of cidr (ValidateIPBlock): not equal to it, not outside it."""
        outer = ip_network(self.cidr)
        for i, raw in enumerate(self.except_):
            try:
                inner = ip_network(raw, strict=False)
            except ValueError:
                raise At(("except", i), f"{show(raw)} is not a CIDR") from None
            if inner.version != outer.version or not inner.subnet_of(outer):  # type: ignore[arg-type]
                raise At(("except", i), f"{inner} must be a strict subset of `cidr` {outer}: it is outside it")
            if inner.prefixlen <= outer.prefixlen:
                raise At(("except", i), f"{inner} must be a strict subset of `cidr` {outer}: it is equal to it")
            self.except_[i] = str(inner)
        return self


class Peer(Loose):
    podSelector: LabelSelector | None = None
    namespaceSelector: LabelSelector | None = None
    ipBlock: IPBlock | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Peer:
        if self.ipBlock is not None and (self.podSelector is not None or self.namespaceSelector is not None):
            raise ValueError("ipBlock cannot be combined with podSelector or namespaceSelector in one peer")
        if self.ipBlock is None and self.podSelector is None and self.namespaceSelector is None:
            raise ValueError("a peer needs podSelector, namespaceSelector or ipBlock")
        return self


class PolicyPort(Loose):
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    port: int | str | None = None
    endPort: int | None = None

    @field_validator("port")
    @classmethod
    def _port(cls, value: int | str | None) -> int | str | None:
        return None if value is None else port_or_name(value)

    @model_validator(mode="after")
    def _range(self) -> PolicyPort:
        if self.endPort is None:
            return self
        if self.port is None:
            raise ValueError("endPort: needs port (the start of the range)")
        if isinstance(self.port, str):
            raise ValueError(f"endPort: cannot be used with a named port ({self.port!r})")
        if not self.port <= self.endPort <= 65535:
            raise ValueError(f"endPort: {self.endPort} must be between port ({self.port}) and 65535")
        return self


class IngressRule(Loose):
    from_: list[Peer] = Field(default_factory=list, alias="from")
    ports: list[PolicyPort] = Field(default_factory=list)


class EgressRule(Loose):
    to: list[Peer] = Field(default_factory=list)
    ports: list[PolicyPort] = Field(default_factory=list)


class NetworkPolicySpec(Loose):
    podSelector: LabelSelector
    policyTypes: list[Literal["Ingress", "Egress"]] | None = None
    ingress: list[IngressRule] = Field(default_factory=list)
    egress: list[EgressRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _default_types(self) -> NetworkPolicySpec:
        """As the API server defaults them: Ingress always, Egress when there are egress rules."""
        if not self.policyTypes:
            self.policyTypes = ["Ingress", *(["Egress"] if self.egress else [])]
        elif len(set(self.policyTypes)) != len(self.policyTypes):
            raise ValueError("policyTypes: a type is listed twice")
        return self

    @property
    def types(self) -> list[str]:
        return list(self.policyTypes or [])


class NetworkPolicy(Loose):
    apiVersion: Literal["networking.k8s.io/v1"]
    kind: Literal["NetworkPolicy"]
    metadata: ObjectMeta
    spec: NetworkPolicySpec

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or "default"

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.metadata.name}"
