"""networking.k8s.io/v1 Ingress and IngressClass, as ValidateIngressSpec and ValidateIngressClass check them:
hosts are DNS names (a leading `*.` allowed), never IPs or with a port; Exact and Prefix paths are absolute and
free of sequences a proxy would normalise; a backend is a Service (by port number or name) or a resource, not
both; a TLS entry names hosts and a Secret."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from testbed.model.meta import Loose, ObjectMeta
from testbed.model.names import At, at, dns1035_label, dns_subdomain, domain_path, host_name, http_path, iana_name

DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"


class ServiceBackendPort(Loose):
    name: Annotated[str, AfterValidator(iana_name)] | None = None
    number: int | None = Field(None, ge=1, le=65535)

    @model_validator(mode="after")
    def _one(self) -> ServiceBackendPort:
        if (self.name is None) == (self.number is None):
            raise ValueError("exactly one of name and number must be set")
        return self

    @property
    def ref(self) -> int | str:
        return self.number if self.number is not None else self.name or ""


class ServiceBackend(Loose):
    name: Annotated[str, AfterValidator(dns1035_label)]
    port: ServiceBackendPort


class TypedReference(Loose):
    apiGroup: str | None = None
    kind: str = Field(min_length=1)
    name: Annotated[str, AfterValidator(dns_subdomain)]


class Backend(Loose):
    service: ServiceBackend | None = None
    resource: TypedReference | None = None

    @model_validator(mode="after")
    def _one(self) -> Backend:
        if self.service is not None and self.resource is not None:
            raise At(("resource",), "cannot be set with service: a backend is one or the other")
        if self.service is None and self.resource is None:
            raise ValueError("one of service and resource must be set")
        return self


class HTTPPath(Loose):
    path: str | None = None
    pathType: Literal["Exact", "Prefix", "ImplementationSpecific"]
    backend: Backend

    @model_validator(mode="after")
    def _path(self) -> HTTPPath:
        if self.path is None:
            if self.pathType != "ImplementationSpecific":
                raise At(("path",), f"must be set for pathType {self.pathType}")
            return self
        if self.pathType == "ImplementationSpecific":
            if not self.path.startswith("/"):
                raise At(("path",), f"{self.path!r} must be an absolute path (start with '/')")
        else:
            at(("path",), http_path, self.path)
        return self


class HTTPRuleValue(Loose):
    paths: list[HTTPPath] = Field(min_length=1)


class Rule(Loose):
    host: Annotated[str, AfterValidator(host_name)] | None = None
    http: HTTPRuleValue | None = None


class TLS(Loose):
    hosts: list[Annotated[str, AfterValidator(host_name)]] = Field(default_factory=list)
    secretName: Annotated[str, AfterValidator(dns_subdomain)] | None = None


class IngressSpec(Loose):
    ingressClassName: Annotated[str, AfterValidator(dns_subdomain)] | None = None
    defaultBackend: Backend | None = None
    tls: list[TLS] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something(self) -> IngressSpec:
        if self.defaultBackend is None and not self.rules:
            raise ValueError("either defaultBackend or rules must be specified")
        return self


class Ingress(Loose):
    apiVersion: Literal["networking.k8s.io/v1"]
    kind: Literal["Ingress"]
    metadata: ObjectMeta
    spec: IngressSpec

    @property
    def class_name(self) -> str | None:
        """spec.ingressClassName, else the deprecated annotation a controller still honours."""
        return self.spec.ingressClassName or self.metadata.annotations.get("kubernetes.io/ingress.class")


class IngressClassSpec(Loose):
    controller: str
    parameters: TypedReference | None = None

    @field_validator("controller")
    @classmethod
    def _controller(cls, value: str) -> str:
        return domain_path(value)


class IngressClass(Loose):
    apiVersion: Literal["networking.k8s.io/v1"]
    kind: Literal["IngressClass"]
    metadata: ObjectMeta
    spec: IngressClassSpec

    @field_validator("metadata")
    @classmethod
    def _cluster_scoped(cls, meta: ObjectMeta) -> ObjectMeta:
        if meta.namespace is not None:
            raise At(("namespace",), "not allowed on this type: an IngressClass is not in a namespace")
        return meta

    @property
    def is_default(self) -> bool:
        return self.metadata.annotations.get(DEFAULT_CLASS_ANNOTATION) == "true"
