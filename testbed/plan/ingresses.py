"""networking.k8s.io/v1 Ingress, planned for testbed's controller: the Ingresses of its classes (the default class
takes those with none; another controller's are ignored) merged into the proxy's HTTP and HTTPS frontends. Hosts
match exactly or, for `*.x`, by one label; paths by Exact, Prefix (element-wise, as the API defines it) or
ImplementationSpecific (a plain string prefix, as ingress-nginx reads it); the longest path wins, Exact before
Prefix at equal length. TLS hosts get their Secret's certificate by SNI and plain HTTP is redirected to HTTPS,
as ingress-nginx does by default. Pure."""

from __future__ import annotations

from typing import Any

from testbed.model import kube
from testbed.model.ingress import Backend, Ingress, IngressClass
from testbed.model.loader import Manifest
from testbed.model.secret import TLS
from testbed.plan.routing import EdgePlan, Frontend, Host, Match, Route, Target, host_rank, pool_name
from testbed.plan.services import ServicePlan

CONTROLLER = "testbed.dev/ingress"
CLASS = "testbed"
HTTP, HTTPS = 80, 443
PATH_RANK = {"Exact": 0, "Prefix": 1, "ImplementationSpecific": 1}


def ours(ingress: Ingress, classes: dict[str, IngressClass]) -> bool:
    name = ingress.class_name
    if name is None:
        return any(c.is_default and c.spec.controller == CONTROLLER for c in classes.values())
    cls = classes.get(name)
    return cls is not None and cls.spec.controller == CONTROLLER


def targets(svc: ServicePlan | None, port: int | str) -> list[Target] | None:
    """A Service port's ready endpoints (None: no such Service or port)."""
    if svc is None:
        return None
    sp = next((p for p in svc.ports if p.port == port or (p.name is not None and p.name == port)), None)
    if sp is None:
        return None
    return [Target(e.ips[0], e.ports[sp.key], pod=e.pod) for e in svc.ready_endpoints(sp) if e.ips]


def _backend(edge: EdgePlan, ns: str, backend: Backend, services: dict[str, ServicePlan], owner: str) -> str:
    if backend.service is None:  # a resource backend (a bucket...): nothing here serves it
        name = pool_name("ing", ns, "resource", backend.resource.kind if backend.resource else "")
        edge.pool(name, owner).status = 503
        return name
    ref = backend.service
    name = pool_name("ing", ns, ref.name, str(ref.port.ref))
    pool = edge.pool(name, owner)
    found = targets(services.get(f"{ns}/{ref.name}"), ref.port.ref)
    if found is None:
        pool.status = 503
        edge.warnings.append(f"Ingress {owner}: Service {ns}/{ref.name} port {ref.port.ref} does not exist "
                             "(503)")
    else:
        pool.targets = found
    return name


def plan(manifests: list[Manifest], services: dict[str, ServicePlan], address: list[str], edge: EdgePlan) -> None:
    """The proxy's Ingress frontends (port 80 and 443) and each handled Ingress's status, into edge."""
    classes = {m.obj.metadata.name: m.obj for m in manifests if isinstance(m.obj, IngressClass)}
    ingresses = [m.obj for m in manifests if isinstance(m.obj, Ingress) and ours(m.obj, classes)]
    secrets = {kube.key(m.obj).split("/", 1)[1]: m.obj for m in manifests if isinstance(m.obj, kube.Secret)}
    http, https = Frontend("ingress_http", HTTP), Frontend("ingress_https", HTTPS, scheme="https")
    default_route = None
    for n, ing in enumerate(ingresses):
        ns, owner = ing.metadata.namespace or "default", f"{ing.metadata.namespace or 'default'}/{ing.metadata.name}"
        for t in ing.spec.tls:
            secret = secrets.get(f"{ns}/{t.secretName}") if t.secretName else None
            if secret is None or secret.type != TLS:
                edge.warnings.append(f"Ingress {owner}: TLS Secret {ns}/{t.secretName} is missing or not "
                                     "kubernetes.io/tls (its hosts are served with no certificate of theirs)")
            else:
                key = f"{ns}/{t.secretName}"
                values = secret.values()
                edge.certificates[key] = (values["tls.crt"], values["tls.key"])
                if key not in https.certificates:
                    https.certificates.append(key)
                http.https_redirect += [Host.of(h, "label") for h in t.hosts]
        for i, rule in enumerate(ing.spec.rules):
            hosts = [Host.of(rule.host, "label")] if rule.host else []
            for j, path in enumerate(rule.http.paths if rule.http else []):
                pool = _backend(edge, ns, path.backend, services, owner)
                kind = {"Exact": "Exact", "Prefix": "Prefix"}.get(path.pathType, "Begins")
                value = path.path or "/"
                if kind == "Prefix" and value != "/":
                    value = value.rstrip("/")
                rank = (*host_rank(hosts), -len(value), PATH_RANK[path.pathType], n, i, j)
                route = Route(Match(hosts, value, kind), pool, rank)  # type: ignore[arg-type]
                http.routes.append(route)
                https.routes.append(route)
        if ing.spec.defaultBackend is not None and default_route is None:
            default_route = Route(Match([], "/", "Begins"),
                                  _backend(edge, ns, ing.spec.defaultBackend, services, owner), (9,))
        edge.status[f"Ingress/{owner}"] = {"loadBalancer": {"ingress": [{"ip": ip} for ip in address]}}
        edge.summary[f"Ingress/{owner}"] = _summary(ing)
    for frontend in (http, https):
        if default_route is not None:
            frontend.routes.append(default_route)
        frontend.routes.sort(key=lambda r: r.rank)
    if https.certificates or any(f.routes for f in (http, https)):
        edge.frontends += [http, https] if https.certificates else [http]
    handled = {f"{i.metadata.namespace or 'default'}/{i.metadata.name}" for i in ingresses}
    for m in manifests:
        if isinstance(m.obj, Ingress):
            key = f"{m.obj.metadata.namespace or 'default'}/{m.obj.metadata.name}"
            if key not in handled:
                edge.summary[f"Ingress/{key}"] = {**_summary(m.obj), "ignored": f"class "
                                                  f"{m.obj.class_name or '(none)'} is not {CONTROLLER}'s"}


def _backend_text(backend: Backend | None) -> str:
    if backend is None:
        return ""
    if backend.service is None:
        return f"{backend.resource.kind}/{backend.resource.name}" if backend.resource else ""
    return f"{backend.service.name}:{backend.service.port.ref}"


def _summary(ing: Ingress) -> dict[str, Any]:
    return {"class": ing.class_name, "defaultBackend": _backend_text(ing.spec.defaultBackend),
            "rules": [{"host": r.host or "*", "path": p.path or "/", "pathType": p.pathType,
                       "backend": _backend_text(p.backend)} for r in ing.spec.rules
                      for p in (r.http.paths if r.http else [])],
            "tls": [{"hosts": t.hosts, "secretName": t.secretName} for t in ing.spec.tls]}


def class_manifest() -> dict[str, Any]:
    """testbed's IngressClass, the cluster's default (as an ingress controller's chart installs one)."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": CLASS, "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
            "spec": {"controller": CONTROLLER}}
