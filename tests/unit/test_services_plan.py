"""Services, pure: allocation that stays put, endpoints with named ports, the per-node view and its nftables and
iptables renderings, and the difference a later sync sends."""

from ipaddress import IPv4Network

from testbed.agent import nftdiff
from testbed.installers.kube_proxy import ipt, nft
from testbed.installers.kube_proxy.view import node_view
from testbed.model import loader
from testbed.model.topology import Topology
from testbed.plan import cluster
from testbed.plan.services import announced_lb, l2_holders

TOPO = Topology.model_validate({"apiVersion": "testbed/v1alpha1", "kind": "Topology", "name": "lab", "nodes": 2,
                                "networking": {"dualStack": True}, "loadBalancer": {"pools": ["198.51.100.0/29"]}})
WEB = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
       "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": {
           "metadata": {"labels": {"app": "web"}},
           "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]}}}}


def _svc(name: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
                     **spec}}


def _plan(*docs: dict, previous: dict | None = None) -> cluster.Plan:
    manifests = loader.load_manifests([loader.Doc(d, "x.yaml") for d in docs])
    return cluster.build(TOPO, manifests, IPv4Network("100.64.1.0/24"), previous)


def test_allocations_stay_across_syncs_and_named_ports_resolve():
    first = _plan(WEB, _svc("a"), _svc("b", type="LoadBalancer", ipFamilyPolicy="PreferDualStack"))
    a, b = first.services
    assert a.cluster_ips == ["10.96.0.11"] and b.cluster_ips == ["10.96.0.12", "fd00:10:96::b"]
    assert b.lb_ips == ["198.51.100.1"] and b.ports[0].node_port == 30000
    assert {e.ports["http"] for e in a.endpoints} == {8080} and len(a.endpoints) == 3
    # a deleted first: b keeps everything it had
    again = _plan(WEB, _svc("b", type="LoadBalancer", ipFamilyPolicy="PreferDualStack"),
                  previous=first.allocations())
    (b2,) = again.services
    assert (b2.cluster_ips, b2.lb_ips, b2.ports[0].node_port) == (b.cluster_ips, b.lb_ips, 30000)


def test_load_balancer_ips_are_announced_or_held_by_one_node():
    plan = _plan(WEB, _svc("b", type="LoadBalancer"))
    assert announced_lb(plan.services, "node1") == ["198.51.100.1/32"]
    assert set(l2_holders(plan.services, ["node1", "node2"])) == {"198.51.100.1"}


def test_renderings_hold_every_frontend_and_endpoint():
    plan = _plan(WEB, _svc("a"), _svc("np", type="NodePort", sessionAffinity="ClientIP"),
                 {**_svc("none"), "spec": {"selector": {"app": "x"}, "ports": [{"port": 81}]}})
    view = node_view(plan, plan.nodes[0])
    text = nft.render(view)
    assert "10.96.0.11 . tcp . 80 : goto pick-cl4-n3" in text
    assert "10.96.0.11 . tcp . 80 . 2 : 10.244." in text  # the third of its three endpoint slots
    assert "chain pick-cl4-n3 { meta l4proto { tcp, udp, sctp } dnat ip to ip daddr . meta l4proto . th dport . " \
           "numgen random mod 3 map @cl4-endpoints; }" in text
    # fixed; the standing shared picks (3 frontend kinds x 2 families x 1-4 endpoints: pick-cl4-n3 among them);
    # the affinity Service: by ClusterIP and by node port, a chain per endpoint each
    assert text.count("  chain ") == 10 + 3 * 2 * nft.STANDING + 2 * (1 + 3)
    assert "tcp . 30000 : goto ext-" in text and "flags dynamic,timeout; timeout 10800s;" in text
    assert "10.96.0.13 . tcp . 81 : goto reject-service" in text
    rules = ipt.render(view, 4)
    assert "-A KUBE-SERVICES -d 10.96.0.13 -p tcp --dport 81 -j REJECT" in rules
    assert "--probability 0.3333333333" in rules and "-m recent --name" in rules
    assert "-A KUBE-SERVICES ! -s 10.244.0.0/16 -d 10.96.0.0/16 -j KUBE-MARK-MASQ" in rules
    # a Service's chain DNATs itself; only the affinity Service keeps a chain per endpoint (-E0.. of each)
    assert rules.count(":KUBE-SVC-") == 2 + 3 and rules.count("-E0 - [0:0]") == 2


def test_the_text_difference_keeps_base_chains_whole():
    text = nft.render(node_view(p := _plan(WEB, _svc("a")), p.nodes[0]))
    assert nftdiff.script(text, text.replace("priority dstnat", "priority 0")) is None


def test_dns_records_follow_the_specification():
    from testbed.plan import dns

    plan = _plan(WEB, _svc("a"), {**_svc("h"), "spec": {**_svc("h")["spec"], "clusterIP": "None"}},
                 {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
                  "spec": {"type": "ExternalName", "externalName": "www.example.com"}})
    rows, reverse = dns.records(plan, "cluster.local")
    assert "a.default.svc A 10.96.0.11" in rows
    assert "_http._tcp.a.default.svc SRV 0 100 80 a.default.svc.cluster.local." in rows
    assert "x.default.svc CNAME www.example.com." in rows
    assert 'dns-version TXT "1.1.0"' in rows
    web = sorted(p.ipv4 for p in plan.pods)
    assert sorted(r.split()[-1] for r in rows if r.startswith("h.default.svc A ")) == web
    assert f"{web[0].replace('.', '-')}.default.pod A {web[0]}" in rows
    assert "11.0 PTR a.default.svc.cluster.local." in reverse["96.10.in-addr.arpa"]
    assert dns.reverse_zone(IPv4Network("10.96.0.0/12")) == "10.in-addr.arpa"
