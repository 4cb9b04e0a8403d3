"""Gateway API v1, planned for testbed's GatewayClass controller: each Gateway's listeners become proxy frontends
(on ports of their own inside the proxy pods, behind the Gateway's own LoadBalancer Service), and each HTTPRoute
attaches to the listeners that allow it, its hostnames intersected with theirs. Matches are ordered as the API
orders them (exact path, longest prefix, method, most headers, most query parameters, then the oldest route);
a rule's backendRefs become one weighted pool, an invalid ref's share answered 500 by the proxy. Statuses
(GatewayClass, Gateway and each listener, each route parent) follow the API's conditions and reasons. Pure."""

from __future__ import annotations

import hashlib
from typing import Any

from testbed.model.gateway import Gateway, GatewayClass, HTTPRoute, ParentRef, ReferenceGrant, RouteRule
from testbed.model.loader import Manifest
from testbed.model.secret import Secret
from testbed.plan.gatewaystatus import attach, cond, grant, listener_status
from testbed.plan.ingresses import targets
from testbed.plan.routing import (
    ERROR_PORT,
    EdgePlan,
    Frontend,
    Host,
    Match,
    Route,
    Target,
    host_rank,
    pool_name,
    weighted,
)
from testbed.plan.services import ServicePlan

CONTROLLER = "testbed.dev/gateway"
CLASS = "testbed"
FIRST_PORT, PORTS_EACH = 20000, 100  # each Gateway's listener ports inside the proxy pods


def _key(obj: Any) -> str:
    return f"{obj.metadata.namespace or 'default'}/{obj.metadata.name}"


def our_gateways(objects: list[Any]) -> list[Gateway]:
    classes = {o.metadata.name for o in objects if isinstance(o, GatewayClass) and o.spec.controllerName == CONTROLLER}
    return sorted((o for o in objects if isinstance(o, Gateway) and o.spec.gatewayClassName in classes), key=_key)


def service_name(gateway: Gateway) -> str:
    """The Gateway's LoadBalancer Service in the ingress namespace (a DNS-1035 label)."""
    text = f"gw-{gateway.metadata.namespace or 'default'}-{gateway.metadata.name}".replace(".", "-")
    return text if len(text) <= 63 else f"{text[:50]}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def ports(gateways: list[Gateway]) -> dict[str, dict[int, int]]:
    """Gateway → its listener ports → the port the proxy listens on for them."""
    return {_key(g): {p: FIRST_PORT + PORTS_EACH * i + j
                      for j, p in enumerate(sorted({x.port for x in g.spec.listeners}))}
            for i, g in enumerate(gateways)}


def service_manifests(gateways: list[Gateway], selector: dict[str, str], lb: bool) -> list[dict[str, Any]]:
    out = []
    for g, inside in zip(gateways, ports(gateways).values(), strict=True):
        out.append({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": service_name(g), "namespace": "testbed-ingress",
                                 "labels": {"gateway.networking.k8s.io/gateway-name": g.metadata.name}},
                    "spec": {"type": "LoadBalancer" if lb else "ClusterIP", "selector": selector,
                             "ports": [{"name": f"l{port}", "port": port, "targetPort": target}
                                       for port, target in inside.items()],
                             **({"externalTrafficPolicy": "Local"} if lb else {})}})
    return out


def _intersect(route: list[str], listener: str | None) -> list[str] | None:
    """The hostnames a route answers on a listener (empty: any), None when they share none."""
    if not route:
        return [listener] if listener else []
    if not listener:
        return route
    out = []
    for r in route:
        if r == listener or (listener.startswith("*.") and r.endswith(listener[1:])):
            out.append(r)
        elif r.startswith("*.") and listener.endswith(r[1:]):
            out.append(listener)
    return out or None


def _refs(rule: RouteRule, ns: str, services: dict[str, ServicePlan], grants: list[ReferenceGrant]) \
        -> tuple[list[tuple[int, list[Target]]], list[tuple[str, str]]]:
    """The rule's backends as (weight, servers), an invalid ref as its weight to the proxy's 500; and the
    reasons refs did not resolve."""
    shares, problems = [], []
    for ref in rule.backendRefs:
        target_ns = ref.namespace or ns
        what = f"{ref.kind} {target_ns}/{ref.name}"
        reason = None
        if ref.group != "" or ref.kind != "Service":
            reason = ("InvalidKind", f"{ref.group or 'core'}/{ref.kind} is not a kind this class serves")
        elif target_ns != ns and not grant(grants, "HTTPRoute", ns, "", "Service", target_ns, ref.name):
            reason = ("RefNotPermitted", f"{what}: no ReferenceGrant in {target_ns} lets HTTPRoutes in {ns} "
                                         "refer to it")
        found = None if reason else targets(services.get(f"{target_ns}/{ref.name}"), ref.port or 0)
        if reason is None and found is None:
            reason = ("BackendNotFound", f"{what} port {ref.port} does not exist")
        if reason:
            problems.append(reason)
            shares.append((ref.weight, [Target("127.0.0.1", ERROR_PORT)]))
        else:
            shares.append((ref.weight, found or []))
    return shares, problems


def _rule_pool(edge: EdgePlan, route: HTTPRoute, i: int, rule: RouteRule, frontend: Frontend,
               listener_port: int, shares: list[tuple[int, list[Target]]]) -> str:
    owner = f"HTTPRoute {_key(route)}"
    pool = edge.pool(pool_name("gw", _key(route), f"r{i}", str(frontend.port)), owner)
    for f in rule.filters:
        if f.requestHeaderModifier:
            m = f.requestHeaderModifier
            pool.request_headers = {"set": [(h.name, h.value) for h in m.set],
                                    "add": [(h.name, h.value) for h in m.add], "remove": list(m.remove)}
        if f.responseHeaderModifier:
            m = f.responseHeaderModifier
            pool.response_headers = {"set": [(h.name, h.value) for h in m.set],
                                     "add": [(h.name, h.value) for h in m.add], "remove": list(m.remove)}
        mod = f.urlRewrite or f.requestRedirect
        if mod is not None and mod.path is not None:
            pool.rewrite_path = ("full", mod.path.replaceFullPath or "/") if mod.path.type == "ReplaceFullPath" \
                else ("prefix", mod.path.replacePrefixMatch or "/")
            pool.match_prefix = rule.matches[0].path.value.rstrip("/") or "/"
        if f.urlRewrite is not None:
            pool.rewrite_host = f.urlRewrite.hostname
        if f.requestRedirect is not None:
            r = f.requestRedirect
            pool.redirect = {"scheme": r.scheme, "hostname": r.hostname, "port": r.port, "code": r.statusCode,
                             "default_scheme": frontend.scheme, "listener_port": listener_port}
    if pool.redirect is None:
        servers = weighted(shares)
        if not any(t.weight for t in servers):  # no backendRefs, all weight 0, or none valid: 500
            pool.status, servers = 500, []
        pool.targets = servers
    return pool.name


def _attach_rules(edge: EdgePlan, route: HTTPRoute, order: int, frontend: Frontend, hosts: list[str],
                  listener_port: int, services: dict[str, ServicePlan], grants: list[ReferenceGrant]) \
        -> list[tuple[str, str]]:
    ns, problems = route.metadata.namespace or "default", []
    wanted = [Host.of(h, "suffix") for h in hosts]
    for i, rule in enumerate(route.spec.rules):
        shares, bad = _refs(rule, ns, services, grants)
        problems += bad
        pool = _rule_pool(edge, route, i, rule, frontend, listener_port, shares)
        for j, m in enumerate(rule.matches):
            kind = "Exact" if m.path.type == "Exact" else "Prefix"
            value = m.path.value if kind == "Exact" or m.path.value == "/" else m.path.value.rstrip("/")
            match = Match(wanted, value, kind, [(h.name, h.value) for h in m.headers],
                          [(q.name, q.value) for q in m.queryParams], m.method)
            rank = (*host_rank(wanted), kind != "Exact", -len(value), m.method is None, -len(m.headers),
                    -len(m.queryParams), order, i, j)
            frontend.routes.append(Route(match, pool, rank))
    return problems


def plan(manifests: list[Manifest], services: dict[str, ServicePlan], namespaces: dict[str, dict[str, str]],
         edge: EdgePlan) -> None:
    objects = [m.obj for m in manifests]
    for o in objects:
        if isinstance(o, GatewayClass) and o.spec.controllerName == CONTROLLER:
            edge.status[f"GatewayClass//{o.metadata.name}"] = {"conditions": [
                cond("Accepted", True, "Accepted", f"handled by {CONTROLLER}")]}
    gateways = our_gateways(objects)
    inside = ports(gateways)
    secrets = {_key(o): o for o in objects if isinstance(o, Secret)}
    grants = [o for o in objects if isinstance(o, ReferenceGrant)]
    routes = [o for o in objects if isinstance(o, HTTPRoute)]
    by_key = {_key(g): g for g in gateways}
    frontends: dict[tuple[str, int], Frontend] = {}
    listeners: dict[tuple[str, str], dict[str, Any]] = {}
    for g in gateways:
        svc = services.get(f"testbed-ingress/{service_name(g)}")
        addresses = svc.lb_ips if svc else []
        gstatus: dict[str, Any] = {"addresses": [{"type": "IPAddress", "value": ip} for ip in addresses],
                                   "listeners": []}
        for listener in g.spec.listeners:
            info = listener_status(g, listener, secrets, grants)
            listeners[(_key(g), listener.name)] = info
            gstatus["listeners"].append(info["status"])
            if info["valid"]:
                fe = frontends.setdefault((_key(g), listener.port), Frontend(
                    pool_name("gw", _key(g), str(listener.port)), inside[_key(g)][listener.port],
                    scheme="https" if listener.protocol == "HTTPS" else "http"))
                for ref in info["certificates"]:
                    edge.certificates[ref] = _pem(secrets[ref])
                    if ref not in fe.certificates:
                        fe.certificates.append(ref)
        valid = any(listeners[(_key(g), x.name)]["valid"] for x in g.spec.listeners)
        gstatus["conditions"] = [
            cond("Accepted", valid, "Accepted" if valid else "ListenersNotValid",
                 "accepted by testbed's gateway" if valid else "no listener is valid"),
            cond("Programmed", bool(addresses) and valid, "Programmed" if addresses else "AddressNotAssigned",
                 f"served at {', '.join(addresses)}" if addresses else
                 "no address: the topology has no loadBalancer.pools")]
        edge.status[f"Gateway/{_key(g)}"] = gstatus
        edge.summary[f"Gateway/{_key(g)}"] = {
            "class": g.spec.gatewayClassName, "service": f"testbed-ingress/{service_name(g)}",
            "listeners": [{"name": x.name, "port": x.port, "protocol": x.protocol, "hostname": x.hostname or "*"}
                          for x in g.spec.listeners]}
    for order, route in enumerate(routes):
        parents = []
        for ref in route.spec.parentRefs:
            if ref.group != "gateway.networking.k8s.io" or ref.kind != "Gateway":
                continue
            g = by_key.get(f"{ref.namespace or route.metadata.namespace or 'default'}/{ref.name}")
            if g is None:
                continue  # another controller's Gateway, or none: not ours to speak for
            parents.append(_parent(edge, route, order, ref, g, listeners, frontends, services, grants,
                                   namespaces))
        if parents:
            edge.status[f"HTTPRoute/{_key(route)}"] = {"parents": parents}
            edge.summary[f"HTTPRoute/{_key(route)}"] = {
                "hostnames": route.spec.hostnames or ["*"],
                "parents": [f"{p['parentRef']['namespace']}/{p['parentRef']['name']}" +
                            (f"/{p['parentRef']['sectionName']}" if "sectionName" in p["parentRef"] else "")
                            for p in parents],
                "rules": [{"matches": [_match_text(m) for m in r.matches],
                           "backends": [f"{b.namespace + '/' if b.namespace else ''}{b.name}:{b.port} "
                                        f"(weight {b.weight})" for b in r.backendRefs],
                           "filters": [f.type for f in r.filters]} for r in route.spec.rules]}
    for fe in frontends.values():
        fe.routes.sort(key=lambda r: r.rank)
        edge.frontends.append(fe)


def _parent(edge: EdgePlan, route: HTTPRoute, order: int, ref: ParentRef, g: Gateway,
            listeners: dict[tuple[str, str], dict[str, Any]], frontends: dict[tuple[str, int], Frontend],
            services: dict[str, ServicePlan], grants: list[ReferenceGrant],
            namespaces: dict[str, dict[str, str]]) -> dict[str, Any]:
    chosen, reason = attach(route, ref, g, listeners, namespaces, _intersect)
    problems: list[tuple[str, str]] = []
    for listener, hosts in chosen:
        info = listeners[(_key(g), listener.name)]
        info["status"]["attachedRoutes"] += 1
        fe = frontends.get((_key(g), listener.port))
        if fe is not None:
            problems += _attach_rules(edge, route, order, fe, hosts, listener.port, services, grants)
    if not chosen:  # the refs still resolve (or not) whether or not the route attached
        for rule in route.spec.rules:
            problems += _refs(rule, route.metadata.namespace or "default", services, grants)[1]
    accepted = cond("Accepted", True, "Accepted", "attached") if chosen else cond("Accepted", False, *reason)
    resolved = cond("ResolvedRefs", not problems, problems[0][0] if problems else "ResolvedRefs",
                    problems[0][1] if problems else "every backendRef resolves")
    out_ref = {"group": ref.group, "kind": ref.kind, "namespace": g.metadata.namespace or "default",
               "name": ref.name, **({"sectionName": ref.sectionName} if ref.sectionName else {}),
               **({"port": ref.port} if ref.port else {})}
    return {"parentRef": out_ref, "controllerName": CONTROLLER, "conditions": [accepted, resolved]}


def _match_text(m: Any) -> str:
    parts = [f"{m.path.type} {m.path.value}"]
    parts += [f"header {h.name}={h.value}" for h in m.headers]
    parts += [f"query {q.name}={q.value}" for q in m.queryParams]
    return " ".join(parts + ([m.method] if m.method else []))


def _pem(secret: Secret) -> tuple[bytes, bytes]:
    values = secret.values()
    return values["tls.crt"], values["tls.key"]


def class_manifest() -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": CLASS},
            "spec": {"controllerName": CONTROLLER}}
