"""The edge plan (pure): Ingress precedence and classes, Gateway API hostname intersection and weights, and
the HAProxy rendering's split between a reload and the runtime API."""

from ipaddress import IPv4Network

import yaml

from testbed import lab
from testbed.installers.ingress import haproxy
from testbed.plan.gateways import _intersect
from testbed.plan.routing import Target, weighted

TOPO = {"apiVersion": "testbed/v1alpha1", "kind": "Topology", "name": "edge", "nodes": 2,
        "loadBalancer": {"pools": ["198.51.100.0/28"]}}


def plan_with(tmp_path, manifests: list[dict]):
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({**TOPO, "manifests": manifests}))
    loaded = lab.load(path)
    return lab.build_plan(loaded.topology, loaded.manifests, IPv4Network("100.64.0.0/24"))


WEB = [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 8080}]}]}}}},
       {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}]


def ingress(name: str, paths: list[tuple[str, str]], cls: str | None = None) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name},
            "spec": {**({"ingressClassName": cls} if cls else {}), "rules": [{"host": "a.example.com", "http": {
                "paths": [{"path": p, "pathType": t, "backend": {"service": {"name": "web", "port": {"number": 80}}}}
                          for p, t in paths]}}]}}


def test_the_longest_path_first_and_exact_before_prefix(tmp_path):
    plan = plan_with(tmp_path, [*WEB, ingress("i", [("/a", "Prefix"), ("/a/b", "Prefix"), ("/a", "Exact")])])
    http = next(f for f in plan.edge.frontends if f.name == "ingress_http")
    assert [(r.match.path, r.match.path_type) for r in http.routes] == \
        [("/a/b", "Prefix"), ("/a", "Exact"), ("/a", "Prefix")]
    assert {len(plan.edge.pools[r.pool].targets) for r in http.routes} == {2}


def test_the_proxy_and_its_service_come_with_the_first_ingress(tmp_path):
    plan = plan_with(tmp_path, WEB)
    assert not [p for p in plan.pods if p.namespace == "testbed-ingress"]
    plan = plan_with(tmp_path, [*WEB, ingress("i", [("/", "Prefix")])])
    assert len([p for p in plan.pods if p.namespace == "testbed-ingress"]) == 2
    svc = next(s for s in plan.services if s.key == "testbed-ingress/ingress")
    assert svc.type == "LoadBalancer" and svc.lb_ips
    assert plan.edge.status["Ingress/default/i"] == {"loadBalancer": {"ingress": [{"ip": svc.lb_ips[0]}]}}


def test_another_class_is_ignored(tmp_path):
    other = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "o"},
             "spec": {"controller": "example.com/o"}}
    plan = plan_with(tmp_path, [*WEB, other, ingress("i", [("/", "Prefix")], "o")])
    assert not plan.edge.frontends and "ignored" in plan.edge.summary["Ingress/default/i"]


def test_hostnames_intersect_as_the_gateway_api_says():
    assert _intersect([], None) == []
    assert _intersect([], "*.example.com") == ["*.example.com"]
    assert _intersect(["a.example.com", "b.other.org"], "*.example.com") == ["a.example.com"]
    assert _intersect(["*.example.com"], "a.example.com") == ["a.example.com"]
    assert _intersect(["x.org"], "a.example.com") is None


def test_weights_hold_between_backends_whatever_their_sizes():
    a = [Target(f"10.0.0.{i}", 80) for i in range(3)]
    b = [Target("10.0.1.1", 80)]
    servers = weighted([(3, a), (1, b)])
    share_a = sum(t.weight for t in servers[:3])
    assert abs(share_a / servers[3].weight - 3) < 0.05
    assert [t.weight for t in weighted([(0, a), (1, b)])][:3] == [0, 0, 0]


def test_endpoint_changes_need_no_reload_but_new_routes_do(tmp_path):
    one = plan_with(tmp_path, [*WEB, ingress("i", [("/", "Prefix")])])
    more = plan_with(tmp_path, [{**WEB[0], "spec": {**WEB[0]["spec"], "replicas": 3}}, WEB[1],
                                ingress("i", [("/", "Prefix")])])
    old, new = haproxy.render(one.edge, False), haproxy.render(more.edge, False)
    assert haproxy.structure(old) == haproxy.structure(new)
    commands = haproxy.runtime_commands(old, new)
    assert any(c.endswith("state ready") for c in commands) and any(" addr " in c for c in commands)
    routed = plan_with(tmp_path, [*WEB, ingress("i", [("/", "Prefix"), ("/x", "Exact")])])
    assert haproxy.structure(haproxy.render(routed.edge, False)) != haproxy.structure(old)


def test_quoting_keeps_anything_literal():
    assert haproxy.q("a b") == "'a b'"
    assert haproxy.q("it's") == '"it\'s"'
    assert haproxy.q('$x "y"') == "'$x \"y\"'"
