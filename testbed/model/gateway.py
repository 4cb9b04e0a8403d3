"""Gateway API v1 (gateway.networking.k8s.io/v1, Standard channel): GatewayClass, Gateway, HTTPRoute and
ReferenceGrant (v1beta1), checked as the CRDs' OpenAPI schemas and CEL rules check them: limits on listeners,
rules, matches, filters and backendRefs; names and hostnames; absolute paths; a filter's type and its one
field; TLS on HTTPS listeners only. testbed's class serves Exact and PathPrefix paths and Exact header and query
matches: a RegularExpression is refused here, naming the field, rather than accepted and never served."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from testbed.model.meta import LabelSelector, Loose, ObjectMeta
from testbed.model.names import At, at, dns_label, dns_subdomain, domain_path, host_name, http_path

GROUP = "gateway.networking.k8s.io"
HeaderName = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")]
Hostname = Annotated[str, AfterValidator(host_name)]
SectionName = Annotated[str, AfterValidator(dns_label)]
MAX_WEIGHT = 1_000_000
NO_REGEX = "RegularExpression is not supported by testbed's gateway class (Exact{})"


class ParentRef(Loose):
    group: str = GROUP
    kind: str = "Gateway"
    namespace: Annotated[str, AfterValidator(dns_label)] | None = None
    name: Annotated[str, AfterValidator(dns_subdomain)]
    sectionName: SectionName | None = None
    port: int | None = Field(None, ge=1, le=65535)


class BackendRef(Loose):
    group: str = ""
    kind: str = "Service"
    name: Annotated[str, AfterValidator(dns_subdomain)]
    namespace: Annotated[str, AfterValidator(dns_label)] | None = None
    port: int | None = Field(None, ge=1, le=65535)
    weight: int = Field(1, ge=0, le=MAX_WEIGHT)

    @model_validator(mode="after")
    def _port(self) -> BackendRef:
        if self.group == "" and self.kind == "Service" and self.port is None:
            raise At(("port",), "must be set for a Service reference")
        return self


class HeaderValue(Loose):
    name: HeaderName
    value: str = Field(max_length=4096)


class HeaderModifier(Loose):
    set: list[HeaderValue] = Field(default_factory=list, max_length=16)
    add: list[HeaderValue] = Field(default_factory=list, max_length=16)
    remove: list[HeaderName] = Field(default_factory=list, max_length=16)


class PathModifier(Loose):
    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    replaceFullPath: str | None = Field(None, max_length=1024)
    replacePrefixMatch: str | None = Field(None, max_length=1024)

    @model_validator(mode="after")
    def _one(self) -> PathModifier:
        wanted = "replaceFullPath" if self.type == "ReplaceFullPath" else "replacePrefixMatch"
        other = "replacePrefixMatch" if wanted == "replaceFullPath" else "replaceFullPath"
        if getattr(self, wanted) is None:
            raise At((wanted,), f"must be specified when type is {self.type}")
        if getattr(self, other) is not None:
            raise At((other,), f"must not be specified when type is {self.type}")
        return self


class RequestRedirect(Loose):
    scheme: Literal["http", "https"] | None = None
    hostname: Annotated[str, AfterValidator(lambda v: host_name(v, wildcard=False))] | None = None
    path: PathModifier | None = None
    port: int | None = Field(None, ge=1, le=65535)
    statusCode: int = 302

    @field_validator("statusCode")
    @classmethod
    def _code(cls, value: int) -> int:
        if value not in (301, 302):
            raise ValueError(f"{value} is not a supported redirect code (301 or 302)")
        return value


class URLRewrite(Loose):
    hostname: Annotated[str, AfterValidator(lambda v: host_name(v, wildcard=False))] | None = None
    path: PathModifier | None = None


FILTER_FIELDS = {"RequestHeaderModifier": "requestHeaderModifier", "ResponseHeaderModifier": "responseHeaderModifier",
                 "RequestRedirect": "requestRedirect", "URLRewrite": "urlRewrite",
                 "RequestMirror": "requestMirror", "ExtensionRef": "extensionRef"}


class Filter(Loose):
    type: Literal["RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite"]
    requestHeaderModifier: HeaderModifier | None = None
    responseHeaderModifier: HeaderModifier | None = None
    requestRedirect: RequestRedirect | None = None
    urlRewrite: URLRewrite | None = None

    @model_validator(mode="after")
    def _one(self) -> Filter:
        wanted = FILTER_FIELDS[self.type]
        if getattr(self, wanted) is None:
            raise At((wanted,), f"must be specified for a {self.type} filter")
        for other in FILTER_FIELDS.values():
            if other != wanted and getattr(self, other, None) is not None:
                raise At((other,), f"must not be set for a {self.type} filter")
        return self


class PathMatch(Loose):
    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: str = Field("/", max_length=1024)

    @model_validator(mode="after")
    def _value(self) -> PathMatch:
        if self.type == "RegularExpression":
            raise At(("type",), NO_REGEX.format(" and PathPrefix"))
        at(("value",), http_path, self.value)
        return self


class HeaderMatch(Loose):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: HeaderName
    value: str = Field(max_length=4096)

    @model_validator(mode="after")
    def _regex(self) -> HeaderMatch:
        if self.type == "RegularExpression":
            raise At(("type",), NO_REGEX.format(""))
        return self


class Match(Loose):
    path: PathMatch = Field(default_factory=PathMatch)
    headers: list[HeaderMatch] = Field(default_factory=list, max_length=16)
    queryParams: list[HeaderMatch] = Field(default_factory=list, max_length=16)
    method: Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"] | None = None


class RouteRule(Loose):
    name: SectionName | None = None
    matches: list[Match] = Field(default_factory=lambda: [Match()], max_length=64)
    filters: list[Filter] = Field(default_factory=list, max_length=16)
    backendRefs: list[BackendRef] = Field(default_factory=list, max_length=16)

    @model_validator(mode="after")
    def _filters(self) -> RouteRule:
        kinds = [f.type for f in self.filters]
        if "RequestRedirect" in kinds and "URLRewrite" in kinds:
            raise At(("filters",), "may specify either a RequestRedirect or a URLRewrite filter, not both")
        for kind in ("RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite"):
            if kinds.count(kind) > 1:
                raise At(("filters",), f"may hold at most one {kind} filter")
        if "RequestRedirect" in kinds and self.backendRefs:
            raise At(("backendRefs",), "must be empty when a RequestRedirect filter answers the request")
        for i, f in enumerate(self.filters):
            mod = (f.requestRedirect or f.urlRewrite)
            if mod is not None and mod.path is not None and mod.path.type == "ReplacePrefixMatch" and \
                    not (len(self.matches) == 1 and self.matches[0].path.type == "PathPrefix"):
                raise At(("filters", i), "ReplacePrefixMatch needs exactly one match, of type PathPrefix")
        return self


class HTTPRouteSpec(Loose):
    parentRefs: list[ParentRef] = Field(default_factory=list, max_length=32)
    hostnames: list[Hostname] = Field(default_factory=list, max_length=16)
    rules: list[RouteRule] = Field(default_factory=lambda: [RouteRule()], max_length=16)

    @model_validator(mode="after")
    def _total(self) -> HTTPRouteSpec:
        if sum(len(r.matches) for r in self.rules) > 128:
            raise At(("rules",), "may hold at most 128 matches in all")
        return self


class HTTPRoute(Loose):
    apiVersion: Literal["gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1"]
    kind: Literal["HTTPRoute"]
    metadata: ObjectMeta
    spec: HTTPRouteSpec = Field(default_factory=HTTPRouteSpec)


class CertificateRef(Loose):
    group: str = ""
    kind: str = "Secret"
    name: Annotated[str, AfterValidator(dns_subdomain)]
    namespace: Annotated[str, AfterValidator(dns_label)] | None = None


class ListenerTLS(Loose):
    mode: Literal["Terminate", "Passthrough"] = "Terminate"
    certificateRefs: list[CertificateRef] = Field(default_factory=list, max_length=64)

    @model_validator(mode="after")
    def _refs(self) -> ListenerTLS:
        if self.mode == "Terminate" and not self.certificateRefs:
            raise At(("certificateRefs",), "must be specified when mode is Terminate")
        return self


class Namespaces(Loose):
    from_: Literal["All", "Same", "Selector"] = Field("Same", alias="from")
    selector: LabelSelector | None = None

    @model_validator(mode="after")
    def _selector(self) -> Namespaces:
        if self.from_ == "Selector" and self.selector is None:
            raise At(("selector",), "must be specified when from is Selector")
        return self


class RouteGroupKind(Loose):
    group: str = GROUP
    kind: str


class AllowedRoutes(Loose):
    namespaces: Namespaces = Field(default_factory=Namespaces)
    kinds: list[RouteGroupKind] = Field(default_factory=list, max_length=8)


class Listener(Loose):
    name: SectionName
    hostname: Hostname | None = None
    port: int = Field(ge=1, le=65535)
    protocol: str = Field(min_length=1, max_length=255)
    tls: ListenerTLS | None = None
    allowedRoutes: AllowedRoutes = Field(default_factory=AllowedRoutes)

    @model_validator(mode="after")
    def _tls(self) -> Listener:
        if self.protocol in ("HTTPS", "TLS") and self.tls is None:
            raise At(("tls",), f"must be specified for protocol {self.protocol}")
        if self.protocol in ("HTTP", "TCP", "UDP") and self.tls is not None:
            raise At(("tls",), f"must not be specified for protocol {self.protocol}")
        if self.protocol in ("TCP", "UDP") and self.hostname is not None:
            raise At(("hostname",), f"must not be specified for protocol {self.protocol}")
        return self


class GatewaySpec(Loose):
    gatewayClassName: Annotated[str, AfterValidator(dns_subdomain)]
    listeners: list[Listener] = Field(min_length=1, max_length=64)

    @model_validator(mode="after")
    def _unique(self) -> GatewaySpec:
        names, combos = set(), set()
        for i, listener in enumerate(self.listeners):
            if listener.name in names:
                raise At(("listeners", i, "name"), f"{listener.name!r}: listener names must be unique")
            combo = (listener.port, listener.protocol, listener.hostname)
            if combo in combos:
                raise At(("listeners", i), "the combination of port, protocol and hostname must be unique")
            names.add(listener.name)
            combos.add(combo)
        return self


class Gateway(Loose):
    apiVersion: Literal["gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1"]
    kind: Literal["Gateway"]
    metadata: ObjectMeta
    spec: GatewaySpec


class GatewayClassSpec(Loose):
    controllerName: str

    @field_validator("controllerName")
    @classmethod
    def _controller(cls, value: str) -> str:
        return domain_path(value, "controllerName")


class GatewayClass(Loose):
    apiVersion: Literal["gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1"]
    kind: Literal["GatewayClass"]
    metadata: ObjectMeta
    spec: GatewayClassSpec

    @field_validator("metadata")
    @classmethod
    def _cluster_scoped(cls, meta: ObjectMeta) -> ObjectMeta:
        if meta.namespace is not None:
            raise At(("namespace",), "not allowed on this type: a GatewayClass is not in a namespace")
        return meta


class GrantFrom(Loose):
    group: str
    kind: str = Field(min_length=1)
    namespace: Annotated[str, AfterValidator(dns_label)]


class GrantTo(Loose):
    group: str
    kind: str = Field(min_length=1)
    name: Annotated[str, AfterValidator(dns_subdomain)] | None = None


class ReferenceGrantSpec(Loose):
    from_: list[GrantFrom] = Field(alias="from", min_length=1, max_length=16)
    to: list[GrantTo] = Field(min_length=1, max_length=16)


class ReferenceGrant(Loose):
    apiVersion: Literal["gateway.networking.k8s.io/v1beta1", "gateway.networking.k8s.io/v1"]
    kind: Literal["ReferenceGrant"]
    metadata: ObjectMeta
    spec: ReferenceGrantSpec
