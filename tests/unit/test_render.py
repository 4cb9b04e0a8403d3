"""Pure renderers: BIRD configurations, the egress NAT table, the external zone. No Docker."""

from ipaddress import IPv4Network

from testbed.installers import egress
from testbed.kinds.external import zone_file
from testbed.model import loader
from testbed.model.topology import Topology
from testbed.network import registry
from testbed.network.modes import bgp
from testbed.plan import cluster

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "m"}, "spec": {"containers": [{"name": "c"}]}}


def _plan(peering: str = "ibgp", previous: dict | None = None) -> cluster.Plan:
    topo = Topology.model_validate({"apiVersion": "testbed/v1alpha1", "kind": "Topology", "name": "lab", "nodes": 2,
                                    "networking": {"network": "bgp", "dualStack": True,
                                                   "bgp": {"peering": peering}}})
    manifests = loader.load_manifests([loader.Doc(POD, "x.yaml")])
    return cluster.build(topo, manifests, IPv4Network("100.64.3.0/24"), previous, traits=registry.traits("bgp"))


def test_a_node_announces_its_range_and_peers_with_the_router():
    plan = _plan()
    text = bgp.node_config(plan, plan.nodes[0])
    assert "protocol static pods4 { ipv4; route 10.244.0.0/24 blackhole; }" in text
    assert "local 100.64.3.11 as 64512; neighbor 100.64.3.1 as 64512;" in text
    assert "hold time 3; keepalive time 1;" in text
    assert "route fd00:10:244::/64 blackhole;" in text
    assert "export where source = RTS_BGP" in text  # only learnt routes reach the kernel


def test_ibgp_makes_the_router_a_route_reflector_and_ebgp_gives_each_node_an_asn():
    plan = _plan()
    assert bgp.router_config(plan, plan.router).count("rr client;") == 4  # 2 nodes x 2 families
    ebgp = _plan("ebgp")
    text = bgp.router_config(ebgp, ebgp.router)
    assert "rr client" not in text
    assert "neighbor 100.64.3.11 as 64513;" in text and "neighbor 100.64.3.12 as 64514;" in text


def test_a_moved_pod_keeps_its_ips_and_its_new_node_announces_them():
    first = _plan()
    (pod,) = first.pods
    other = next(n for n in first.nodes if n.name != pod.node)
    moved = _plan(previous={pod.key: {"node": other.name, "ipv4": pod.ipv4}})
    (again,) = moved.pods
    assert (again.node, again.ipv4, again.ipv6, again.routed) == (other.name, pod.ipv4, pod.ipv6, True)
    assert bgp.announced(moved, moved.node(other.name)) == (
        [other.cidr4, f"{pod.ipv4}/32"], [other.cidr6, f"{pod.ipv6}/128"])
    home = moved.node(pod.node)
    assert bgp.proxied(moved, home) == {pod.ipv6}
    assert f"{pod.ipv4}/32" in bgp.expected_routes(moved, home)


def test_egress_masquerades_pods_leaving_the_cluster_ranges():
    plan = _plan()
    text = egress.render(plan)
    assert "elements = { 10.244.0.0/16, 10.96.0.0/16, 100.64.3.0/24 }" in text
    assert "ip saddr 10.244.0.0/16 ip daddr != @cluster4 masquerade" in text
    assert "ip6 saddr fd00:10:244::/56 ip6 daddr != @cluster6 masquerade" in text
    assert "type nat hook postrouting priority srcnat" in text


def test_the_external_zone_names_every_host_and_www():
    text = zone_file(_plan())
    assert "www A 203.0.113.11" in text and "www AAAA 2001:db8::b" in text
    assert "ns1 A 203.0.113.10" in text and "web CNAME www" in text
