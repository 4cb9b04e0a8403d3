"""Gateway API v1 through the HAProxy pods, with real requests from the external host ext2 to the Gateway's own
LoadBalancer address: hostname intersection, path, header, query and method matches, header modifiers seen in
the backend's echo, redirect and rewrite, a 3:1 weight split over 400 requests, a cross-namespace backend refused
without a ReferenceGrant and served with one, and the status conditions of the Gateway, its listeners and each
route parent."""

import pytest
import yaml
from edgelab import CLIENT, address, client, get, served_by

GATEWAY = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "gw"},
           "spec": {"gatewayClassName": "testbed", "listeners": [
               {"name": "web", "port": 80, "protocol": "HTTP", "hostname": "*.gw.example.com",
                "allowedRoutes": {"namespaces": {"from": "All"}}},
               {"name": "same", "port": 8080, "protocol": "HTTP"},
               {"name": "selected", "port": 8081, "protocol": "HTTP",
                "allowedRoutes": {"namespaces": {"from": "Selector",
                                                 "selector": {"matchLabels": {"edge": "allowed"}}}}}]}}


def route(name: str, rules: list, hostnames: list | None = None, parent: dict | None = None,
          namespace: str = "default") -> dict:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"parentRefs": [parent or {"name": "gw", "namespace": "default", "sectionName": "web"}],
                     "hostnames": hostnames or [], "rules": rules}}


def backend(name: str, port: int, weight: int = 1, namespace: str | None = None) -> dict:
    return {"name": name, "port": port, "weight": weight, **({"namespace": namespace} if namespace else {})}


ROUTES = [
    route("match", [
        {"matches": [{"path": {"type": "Exact", "value": "/exact"}}], "backendRefs": [backend("api", 8080)]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/h"}, "headers": [{"name": "x-team", "value": "a"}]}],
         "backendRefs": [backend("api", 8080)]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/q"}, "queryParams": [{"name": "v", "value": "2"}]}],
         "backendRefs": [backend("api", 8080)]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/m"}, "method": "POST"}],
         "backendRefs": [backend("api", 8080)]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": [backend("web", 80)]}],
        ["match.gw.example.com", "elsewhere.example.org"]),
    route("filters", [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/headers"}}],
         "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {
             "set": [{"name": "x-set", "value": "set"}], "add": [{"name": "x-add", "value": "added"}],
             "remove": ["x-drop"]}},
             {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"set": [{"name": "x-reply",
                                                                                   "value": "yes"}]}}],
         "backendRefs": [backend("web", 80)]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/old"}}],
         "filters": [{"type": "RequestRedirect", "requestRedirect": {
             "scheme": "https", "hostname": "new.example.com", "statusCode": 301,
             "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}}}]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/rewrite"}}],
         "filters": [{"type": "URLRewrite", "urlRewrite": {"hostname": "inside.example.com", "path": {
             "type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}],
         "backendRefs": [backend("web", 80)]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/full"}}],
         "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplaceFullPath",
                                                                     "replaceFullPath": "/whole"}}}],
         "backendRefs": [backend("web", 80)]}],
        ["filters.gw.example.com"]),
    route("split", [{"backendRefs": [backend("web", 80, 3), backend("api", 8080, 1)]}], ["split.gw.example.com"]),
    route("zero", [{"backendRefs": [backend("web", 80, 0), backend("api", 8080, 1)]}], ["zero.gw.example.com"]),
    route("broken", [{"backendRefs": [backend("nosuch", 80)]}], ["broken.gw.example.com"]),
    route("cross", [{"backendRefs": [backend("foreign", 80, namespace="other")]}], ["cross.gw.example.com"]),
    route("kind", [{"backendRefs": [{"group": "example.com", "kind": "Bucket", "name": "b"}]}],
          ["kind.gw.example.com"]),
    route("nohost", [{"backendRefs": [backend("web", 80)]}], ["x.other.example.org"]),
    route("from-other", [{"backendRefs": [backend("foreign", 80)]}], namespace="other",
          parent={"name": "gw", "namespace": "default", "sectionName": "same"}),
    route("from-team", [{"backendRefs": [backend("web", 80, namespace="default")]}], namespace="team",
          parent={"name": "gw", "namespace": "default", "sectionName": "selected"}),
]
GRANT = {"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
         "metadata": {"name": "let-default-in", "namespace": "other"},
         "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "default"}],
                  "to": [{"group": "", "kind": "Service"}]}}
TEAM_GRANT = {**GRANT, "metadata": {"name": "let-team-in", "namespace": "default"},
              "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "team"}],
                       "to": [{"group": "", "kind": "Service", "name": "web"}]}}


@pytest.fixture(scope="module")
def gw(testbed_labs, pytestconfig, tmp_path_factory):
    lab = testbed_labs.get(pytestconfig.rootpath / "tests/e2e/edge.yaml")
    path = tmp_path_factory.mktemp("gw") / "gateway.yaml"
    path.write_text(yaml.safe_dump_all([GATEWAY, *ROUTES, TEAM_GRANT]))
    lab.apply(path)
    yield lab
    lab.delete(path)


def conditions(lab, key: str, parent: int = 0) -> dict[str, str]:
    status = lab.plan.edge.status[key]
    found = status["parents"][parent]["conditions"] if "parents" in status else status["conditions"]
    return {c["type"]: c["reason"] for c in found}


def at(lab, host: str, path: str = "/", **kw) -> str:
    return served_by(lab, host, path, ip=address(lab, "default/gw"), **kw)


def test_the_gateway_has_its_own_address_and_its_conditions(gw):
    status = gw.plan.edge.status["Gateway/default/gw"]
    assert status["addresses"][0]["value"] != address(gw)
    assert conditions(gw, "Gateway/default/gw") == {"Accepted": "Accepted", "Programmed": "Programmed"}
    listeners = {x["name"]: x for x in status["listeners"]}
    assert {c["type"]: c["status"] for c in listeners["web"]["conditions"]} == \
        {"Accepted": "True", "ResolvedRefs": "True", "Programmed": "True", "Conflicted": "False"}
    assert listeners["web"]["attachedRoutes"] == 7  # every route of the web listener but the one with no host
    assert listeners["same"]["attachedRoutes"] == 0 and listeners["selected"]["attachedRoutes"] == 1
    assert conditions(gw, "GatewayClass//testbed") == {"Accepted": "Accepted"}


def test_a_gateway_keeps_the_clients_address(gw):
    """The Gateway's Service has externalTrafficPolicy Local (Envoy Gateway's default): its address is held by
    a node with a proxy, whose kube-proxy does not masquerade, so the backend sees the external host itself."""
    svc = next(s for s in gw.plan.services if s.lb_ips == [address(gw, "default/gw")])
    assert svc.external_local
    headers = get(gw, "match.gw.example.com", "/who", ip=address(gw, "default/gw")).doc["headers"]
    assert headers["X-Forwarded-For"] == [gw.plan.machine(CLIENT).ip]


def test_hostnames_intersect_with_the_listeners(gw):
    assert at(gw, "match.gw.example.com") == "web"
    assert at(gw, "elsewhere.example.org") == "404"  # not the listener's
    assert at(gw, "unrouted.gw.example.com") == "404"
    assert conditions(gw, "HTTPRoute/default/nohost")["Accepted"] == "NoMatchingListenerHostname"


@pytest.mark.parametrize(("path", "kw", "backend"), [
    ("/exact", {}, "api"), ("/exact/more", {}, "web"),
    ("/h", {"headers": {"X-Team": "a"}}, "api"), ("/h", {"headers": {"x-team": "b"}}, "web"), ("/h", {}, "web"),
    ("/q?v=2", {}, "api"), ("/q?v=3", {}, "web"),
    ("/m", {"method": "POST"}, "api"), ("/m", {}, "web"),
])
def test_path_header_query_and_method_matches(gw, path, kw, backend):
    assert at(gw, "match.gw.example.com", path, **kw) == backend


def test_header_modifiers_are_seen_by_the_backend_and_the_client(gw):
    answer = get(gw, "filters.gw.example.com", "/headers", ip=address(gw, "default/gw"),
                 headers={"x-drop": "gone", "x-add": "first", "x-set": "old"})
    headers = answer.doc["headers"]
    assert headers["X-Set"] == ["set"]
    assert headers["X-Add"] == ["first", "added"]
    assert "X-Drop" not in headers
    assert answer.header("x-reply") == "yes"


def test_redirect_and_rewrites(gw):
    ip = address(gw, "default/gw")
    moved = get(gw, "filters.gw.example.com", "/old/page?x=1", ip=ip)
    assert moved.code == 301
    assert moved.header("location") == "https://new.example.com/new/page?x=1"
    rewritten = get(gw, "filters.gw.example.com", "/rewrite/deep/er?k=v", ip=ip).doc
    assert (rewritten["path"], rewritten["query"], rewritten["host"]) == ("/deep/er", "k=v", "inside.example.com")
    assert get(gw, "filters.gw.example.com", "/rewrite", ip=ip).doc["path"] == "/"
    assert get(gw, "filters.gw.example.com", "/full/x", ip=ip).doc["path"] == "/whole"


def test_a_three_to_one_split_over_400_requests(gw):
    ip = address(gw, "default/gw")
    loop = ("for i in $(seq 400); do curl -s --max-time 5 --resolve split.gw.example.com:80:" + ip +
            " http://split.gw.example.com/hostname; echo; done")
    names = client(gw).exec_run(["sh", "-c", loop]).output.decode().split()
    assert len(names) == 400
    web = sum(n.startswith("web-") for n in names)
    api = sum(n.startswith("api-") for n in names)
    assert web + api == 400
    # 3:1 is 300 of 400; a binomial(400, 0.75) stays within 4 standard deviations (8.7) of it
    assert 265 <= web <= 335, (web, api)
    assert {at(gw, "zero.gw.example.com") for _ in range(8)} == {"api"}  # weight 0 gets nothing


def test_refs_that_do_not_resolve(gw):
    assert conditions(gw, "HTTPRoute/default/broken")["ResolvedRefs"] == "BackendNotFound"
    assert at(gw, "broken.gw.example.com") == "500"
    assert conditions(gw, "HTTPRoute/default/kind")["ResolvedRefs"] == "InvalidKind"
    assert conditions(gw, "HTTPRoute/default/match") == {"Accepted": "Accepted", "ResolvedRefs": "ResolvedRefs"}


def test_listeners_allow_routes_by_namespace(gw):
    assert conditions(gw, "HTTPRoute/other/from-other")["Accepted"] == "NotAllowedByListeners"
    assert conditions(gw, "HTTPRoute/team/from-team") == {"Accepted": "Accepted", "ResolvedRefs": "ResolvedRefs"}
    assert served_by(gw, "any.example.com", ip=address(gw, "default/gw"), port=8081) == "web"


def test_a_cross_namespace_backend_needs_a_reference_grant(gw, tmp_path):
    assert conditions(gw, "HTTPRoute/default/cross")["ResolvedRefs"] == "RefNotPermitted"
    assert at(gw, "cross.gw.example.com") == "500"
    (tmp_path / "grant.yaml").write_text(yaml.safe_dump(GRANT))
    gw.apply(tmp_path / "grant.yaml")
    try:
        assert conditions(gw, "HTTPRoute/default/cross")["ResolvedRefs"] == "ResolvedRefs"
        assert at(gw, "cross.gw.example.com") == "foreign"
    finally:
        gw.delete(tmp_path / "grant.yaml")
    assert at(gw, "cross.gw.example.com") == "500"
