"""Pods and Deployments, as ValidatePodSpec and ValidateDeploymentSpec check the fields testbed acts on:
containers (names, ports, command, probes), restartPolicy, scheduling (nodeName, nodeSelector) and DNS
(hostname, subdomain, dnsPolicy, dnsConfig); replicas, selector, template and strategy."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, IPvAnyAddress, field_validator, model_validator

from testbed.model.meta import LabelSelector, Loose, ObjectMeta, TemplateMeta
from testbed.model.names import At, Labels, dns_label, dns_subdomain, iana_name
from testbed.model.probe import Probe

MAX_SEARCH_CHARS = 2048  # the resolver's limit on the search list (MaxDNSSearchListChars)


class ContainerPort(Loose):
    containerPort: int = Field(ge=1, le=65535)
    name: Annotated[str, AfterValidator(iana_name)] | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    hostPort: int | None = Field(None, ge=0, le=65535)


class Container(Loose):
    name: Annotated[str, AfterValidator(dns_label)]
    image: str | None = None
    ports: list[ContainerPort] = Field(default_factory=list)
    command: list[Annotated[str, Field(strict=True)]] | None = None
    args: list[Annotated[str, Field(strict=True)]] | None = None
    readinessProbe: Probe | None = None
    livenessProbe: Probe | None = None
    startupProbe: Probe | None = None

    @model_validator(mode="after")
    def _probes(self) -> Container:
        names = {p.name for p in self.ports}
        for field in ("readinessProbe", "livenessProbe", "startupProbe"):
            probe: Probe | None = getattr(self, field)
            if probe is None:
                continue
            if name := probe.undeclared_port(names):
                raise At((field,), f"port {name!r} is not a named port of container {self.name!r}")
            if field != "readinessProbe" and probe.successThreshold != 1:
                raise At((field, "successThreshold"), f"must be 1 for a {field} (got {probe.successThreshold})")
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
    name: str = Field(min_length=1)
    value: str | None = None


def _search(value: str) -> str:
    return dns_subdomain(value.removesuffix("."))


class PodDNSConfig(Loose):
    nameservers: list[IPvAnyAddress] = Field(default_factory=list, max_length=3)
    searches: list[Annotated[str, AfterValidator(_search)]] = Field(default_factory=list, max_length=32)
    options: list[DNSOption] = Field(default_factory=list)

    @field_validator("searches")
    @classmethod
    def _length(cls, searches: list[str]) -> list[str]:
        if (total := len(" ".join(searches))) > MAX_SEARCH_CHARS:
            raise ValueError(f"the search list is {total} characters long, more than {MAX_SEARCH_CHARS}")
        return searches


class PodSpec(Loose):
    containers: list[Container] = Field(min_length=1)
    restartPolicy: Literal["Always", "OnFailure", "Never"] = "Always"
    nodeName: Annotated[str, AfterValidator(dns_subdomain)] | None = None
    nodeSelector: Labels = Field(default_factory=dict)
    hostNetwork: bool = False
    hostname: Annotated[str, AfterValidator(dns_label)] | None = None
    subdomain: Annotated[str, AfterValidator(dns_label)] | None = None
    dnsPolicy: Literal["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"] = "ClusterFirst"
    dnsConfig: PodDNSConfig | None = None
    terminationGracePeriodSeconds: int | None = Field(None, ge=0)
    activeDeadlineSeconds: int | None = Field(None, ge=1)

    @field_validator("hostNetwork")
    @classmethod
    def _own_netns(cls, value: bool) -> bool:
        if value:
            raise ValueError("hostNetwork: true is not supported: every testbed pod gets its own network "
                             "namespace and pod IP (remove the field, or run the command on the node with "
                             "`docker exec`)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> PodSpec:
        if self.dnsPolicy == "None" and (self.dnsConfig is None or not self.dnsConfig.nameservers):
            raise At(("dnsConfig",), "dnsPolicy None needs dnsConfig with at least one nameserver")
        containers: set[str] = set()
        seen: set[tuple[int, str]] = set()
        names: set[str] = set()
        for i, c in enumerate(self.containers):
            if c.name in containers:
                raise At(("containers", i, "name"), f"Duplicate value: {c.name!r}")
            containers.add(c.name)
            for j, p in enumerate(c.ports):
                where = ("containers", i, "ports", j)
                # the API server only warns; here two listeners on one port cannot both be opened
                if (p.containerPort, p.protocol) in seen:
                    raise At(where, f"containerPort {p.containerPort}/{p.protocol} is declared twice")
                seen.add((p.containerPort, p.protocol))
                if p.name:
                    if p.name in names:
                        raise At((*where, "name"), f"port name {p.name!r} is declared twice")
                    names.add(p.name)
        return self

    def ports(self) -> list[ContainerPort]:
        return [p for c in self.containers for p in c.ports]


class Pod(Loose):
    apiVersion: Literal["v1"]
    kind: Literal["Pod"]
    metadata: ObjectMeta
    spec: PodSpec


class PodTemplate(Loose):
    metadata: TemplateMeta = Field(default_factory=TemplateMeta)
    spec: PodSpec


class RollingUpdate(Loose):
    maxUnavailable: int | str | None = None
    maxSurge: int | str | None = None

    @field_validator("maxUnavailable", "maxSurge")
    @classmethod
    def _int_or_percent(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 0:
            raise ValueError(f"{value} must be greater than or equal to 0")
        if isinstance(value, str) and not (value.endswith("%") and value[:-1].isdigit()):
            raise ValueError(f"{value!r} must be an integer or a percentage (e.g. '25%')")
        if isinstance(value, str) and int(value[:-1]) > 100:
            raise ValueError(f"{value!r} must not be greater than 100%")
        return value

    def zero(self, name: str) -> bool:
        value = getattr(self, name)
        return value is not None and str(value).rstrip("%") == "0"


class Strategy(Loose):
    type: Literal["RollingUpdate", "Recreate"] = "RollingUpdate"
    rollingUpdate: RollingUpdate | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Strategy:
        if self.type == "Recreate" and self.rollingUpdate is not None:
            raise At(("rollingUpdate",), "may not be specified when strategy `type` is 'Recreate'")
        ru = self.rollingUpdate
        if ru is not None and ru.zero("maxUnavailable") and ru.zero("maxSurge"):
            raise At(("rollingUpdate", "maxUnavailable"), "may not be 0 when `maxSurge` is 0")
        return self


class DeploymentSpec(Loose):
    replicas: int = Field(default=1, ge=0, le=10000)
    selector: LabelSelector
    template: PodTemplate
    strategy: Strategy = Field(default_factory=Strategy)
    minReadySeconds: int = Field(0, ge=0)
    revisionHistoryLimit: int | None = Field(None, ge=0)
    progressDeadlineSeconds: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> DeploymentSpec:
        if self.selector.empty:
            raise At(("selector",), "must not be empty")
        if not self.selector.matches(self.template.metadata.labels):
            raise At(("template", "metadata", "labels"), "`selector` does not match template `labels`")
        if self.template.spec.restartPolicy != "Always":
            raise At(("template", "spec", "restartPolicy"), f"{self.template.spec.restartPolicy!r} is not "
                                                            "supported in a Deployment: only 'Always'")
        if self.progressDeadlineSeconds is not None and self.progressDeadlineSeconds <= self.minReadySeconds:
            raise At(("progressDeadlineSeconds",), "must be greater than minReadySeconds")
        return self


class Deployment(Loose):
    apiVersion: Literal["apps/v1"]
    kind: Literal["Deployment"]
    metadata: ObjectMeta
    spec: DeploymentSpec
