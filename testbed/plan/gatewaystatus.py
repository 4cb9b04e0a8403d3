"""The Gateway API's conditions, as its types define them: a listener's (Accepted, ResolvedRefs, Programmed,
Conflicted), which listeners a route's parentRef attaches to and why not (NoMatchingParent,
NotAllowedByListeners, NoMatchingListenerHostname), and ReferenceGrants for refs across namespaces. Pure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from testbed.model.gateway import GROUP, Gateway, HTTPRoute, Listener, ParentRef, ReferenceGrant
from testbed.model.secret import TLS, Secret

PROTOCOLS = ("HTTP", "HTTPS")


def cond(kind: str, ok: bool, reason: str, message: str) -> dict[str, str]:
    return {"type": kind, "status": "True" if ok else "False", "reason": reason, "message": message}


def grant(grants: list[ReferenceGrant], from_kind: str, from_ns: str, to_group: str, to_kind: str, to_ns: str,
          to_name: str) -> bool:
    """Whether a ReferenceGrant in to_ns lets from_kind objects in from_ns refer to that object."""
    group = GROUP if from_kind in ("HTTPRoute", "Gateway") else ""
    for g in grants:
        if (g.metadata.namespace or "default") != to_ns:
            continue
        if any(f.group == group and f.kind == from_kind and f.namespace == from_ns for f in g.spec.from_) and \
                any(t.group == to_group and t.kind == to_kind and t.name in (None, to_name) for t in g.spec.to):
            return True
    return False


def listener_status(g: Gateway, listener: Listener, secrets: dict[str, Secret],
                    grants: list[ReferenceGrant]) -> dict[str, Any]:
    ns = g.metadata.namespace or "default"
    conflicted = any(x.port == listener.port and x.protocol != listener.protocol for x in g.spec.listeners)
    supported = listener.protocol in PROTOCOLS
    certificates, problem = [], None
    if listener.tls is not None and supported:
        if listener.tls.mode != "Terminate":
            problem = ("UnsupportedValue", "only TLS mode Terminate is served")
        for ref in listener.tls.certificateRefs:
            ref_ns = ref.namespace or ns
            if ref.group != "" or ref.kind != "Secret":
                problem = problem or ("InvalidCertificateRef", f"{ref.kind} is not a Secret")
            elif ref_ns != ns and not grant(grants, "Gateway", ns, "", "Secret", ref_ns, ref.name):
                problem = problem or ("RefNotPermitted", f"no ReferenceGrant in {ref_ns} lets Gateways in {ns} "
                                                         f"use Secret {ref.name}")
            elif (s := secrets.get(f"{ref_ns}/{ref.name}")) is None or s.type != TLS:
                problem = problem or ("InvalidCertificateRef", f"Secret {ref_ns}/{ref.name} is missing or not "
                                                               f"{TLS}")
            else:
                certificates.append(f"{ref_ns}/{ref.name}")
    valid = supported and problem is None and not conflicted
    conditions = [
        cond("Accepted", supported and not conflicted,
             "Accepted" if supported and not conflicted else "UnsupportedProtocol" if not supported
             else "ProtocolConflict",
             f"{listener.protocol} on port {listener.port}" if supported else
             f"protocol {listener.protocol} is not served (HTTP and HTTPS are)"),
        cond("ResolvedRefs", problem is None, problem[0] if problem else "ResolvedRefs",
             problem[1] if problem else "every certificateRef resolves"),
        cond("Programmed", valid, "Programmed" if valid else "Invalid",
             "the proxy serves it" if valid else "not served"),
        cond("Conflicted", conflicted, "ProtocolConflict" if conflicted else "NoConflicts",
             f"another listener uses port {listener.port} with another protocol" if conflicted else "no conflict")]
    return {"valid": valid, "certificates": certificates,
            "status": {"name": listener.name, "attachedRoutes": 0, "conditions": conditions,
                       "supportedKinds": [{"group": GROUP, "kind": "HTTPRoute"}] if supported else []}}


def _allows(listener: Listener, g: Gateway, route_ns: str, namespaces: dict[str, dict[str, str]]) -> bool:
    allowed = listener.allowedRoutes
    if allowed.kinds and not any(k.kind == "HTTPRoute" and k.group == GROUP for k in allowed.kinds):
        return False
    source = allowed.namespaces.from_
    if source == "All":
        return True
    if source == "Same":
        return route_ns == (g.metadata.namespace or "default")
    selector = allowed.namespaces.selector
    return selector is not None and selector.matches(namespaces.get(route_ns, {}))


def attach(route: HTTPRoute, ref: ParentRef, g: Gateway, listeners: dict[tuple[str, str], dict[str, Any]],
           namespaces: dict[str, dict[str, str]],
           intersect: Callable[[list[str], str | None], list[str] | None]) \
        -> tuple[list[tuple[Listener, list[str]]], tuple[str, str]]:
    """The listeners of g the parentRef attaches the route to, each with the hostnames it answers there; or
    none, and the reason."""
    key = f"{g.metadata.namespace or 'default'}/{g.metadata.name}"
    candidates = [x for x in g.spec.listeners if (ref.sectionName is None or x.name == ref.sectionName)
                  and (ref.port is None or x.port == ref.port)]
    if not candidates:
        return [], ("NoMatchingParent", f"Gateway {key} has no listener {ref.sectionName or ref.port}")
    route_ns = route.metadata.namespace or "default"
    allowed = [x for x in candidates if listeners[(key, x.name)]["valid"] and _allows(x, g, route_ns, namespaces)]
    if not allowed:
        return [], ("NotAllowedByListeners", f"no listener of Gateway {key} allows HTTPRoutes from {route_ns}")
    chosen = [(x, hosts) for x in allowed if (hosts := intersect(route.spec.hostnames, x.hostname)) is not None]
    if not chosen:
        return [], ("NoMatchingListenerHostname", f"no listener hostname of Gateway {key} matches "
                                                  f"{', '.join(route.spec.hostnames)}")
    return chosen, ("Accepted", "")
