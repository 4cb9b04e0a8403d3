"""The edge of the cluster, planned: what the ingress proxy serves, whoever asked for it (an Ingress or a Gateway
API route). Frontends are the ports the proxy listens on, each with the certificates it offers by SNI and an
ordered list of routes; a route is a match (hosts, path, headers, query, method) and what answers it: a pool
of servers (a Service's ready endpoints, weighted), a redirect, or a fixed status. Pure data and ordering; the
ingress installer renders it for HAProxy."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

INGRESS_NAMESPACE = "testbed-ingress"
ERROR_PORT = 10500  # a proxy-local frontend answering 500: the share of traffic of an invalid backendRef


@dataclass(frozen=True)
class Host:
    """A host a route answers for. exact: that name; label: `*.x` standing for one label (Ingress); suffix:
    `*.x` standing for any number of labels (Gateway API)."""

    name: str
    kind: Literal["exact", "label", "suffix"] = "exact"

    @staticmethod
    def of(name: str, wildcard: Literal["label", "suffix"]) -> Host:
        return Host(name[2:], wildcard) if name.startswith("*.") else Host(name)

    @property
    def text(self) -> str:
        return self.name if self.kind == "exact" else f"*.{self.name}"


@dataclass
class Target:
    """One server of a pool: an endpoint of a Service port, or the proxy's own 500 answer."""

    ip: str
    port: int
    weight: int = 1
    pod: str | None = None


@dataclass
class Pool:
    name: str
    targets: list[Target] = field(default_factory=list)
    status: int | None = None  # answered by the proxy itself (500: no valid backend; 503: a missing Service)
    request_headers: dict[str, list[Any]] = field(default_factory=dict)  # set/add/remove
    response_headers: dict[str, list[Any]] = field(default_factory=dict)
    rewrite_host: str | None = None
    rewrite_path: tuple[str, str] | None = None  # ("full", path) or ("prefix", replacement) of match_prefix
    match_prefix: str | None = None
    redirect: dict[str, Any] | None = None  # scheme, hostname, port, path, code; default_scheme, listener_port
    owners: list[str] = field(default_factory=list)  # the objects that asked for it, for people


@dataclass
class Match:
    hosts: list[Host] = field(default_factory=list)  # empty: any host
    path: str = "/"
    path_type: Literal["Exact", "Prefix", "Begins"] = "Prefix"  # Prefix is element-wise; Begins is a string
    headers: list[tuple[str, str]] = field(default_factory=list)
    query: list[tuple[str, str]] = field(default_factory=list)
    method: str | None = None


@dataclass
class Route:
    match: Match
    pool: str
    rank: tuple[Any, ...] = ()  # lower first: the API's precedence, then the order objects were given in


@dataclass
class Frontend:
    name: str
    port: int  # where the proxy listens, in its pods
    certificates: list[str] = field(default_factory=list)  # Secret keys (ns/name), offered by SNI
    routes: list[Route] = field(default_factory=list)
    https_redirect: list[Host] = field(default_factory=list)  # hosts sent to https (Ingress TLS hosts)
    scheme: str = "http"

    @property
    def tls(self) -> bool:
        return bool(self.certificates)


@dataclass
class EdgePlan:
    frontends: list[Frontend] = field(default_factory=list)
    pools: dict[str, Pool] = field(default_factory=dict)
    certificates: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)  # ns/name → (cert, key) PEM
    status: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind/ns/name → its status, as the API
    summary: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind/ns/name → its spec, for people
    warnings: list[str] = field(default_factory=list)

    def pool(self, name: str, owner: str) -> Pool:
        pool = self.pools.setdefault(name, Pool(name))
        if owner not in pool.owners:
            pool.owners.append(owner)
        return pool


def pool_name(*parts: str) -> str:
    """A stable HAProxy backend name from what defines it, readable and bounded."""
    text = "_".join(p.replace("/", "_") for p in parts)
    return text if len(text) <= 60 else f"{text[:47]}_{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def host_rank(hosts: list[Host]) -> tuple[int, int]:
    """Exact hosts before wildcards, longer wildcards before shorter, any host last."""
    if not hosts:
        return (2, 0)
    best = min(hosts, key=lambda h: (h.kind != "exact", -len(h.name)))
    return (0 if best.kind == "exact" else 1, -len(best.name))


def order(routes: list[Route]) -> list[Route]:
    return sorted(routes, key=lambda r: r.rank)


def weighted(shares: list[tuple[int, list[Target]]]) -> list[Target]:
    """Servers for backends given as (weight, their endpoints): each endpoint gets its backend's weight
    divided among the backend's endpoints, scaled into HAProxy's 0-256 so the backends' shares hold."""
    per = [(w / len(ts), ts) for w, ts in shares if ts]
    top = max((x for x, _ in per), default=0)
    out = []
    for x, ts in per:
        weight = 0 if x == 0 else max(1, round(x / top * 256))
        out += [Target(t.ip, t.port, weight, t.pod) for t in ts]
    return out
