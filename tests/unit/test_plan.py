import random
from ipaddress import IPv4Network, IPv6Network

import pytest

from testbed.model import kube
from testbed.plan import ipam
from testbed.plan.workloads import PodIntent, Unschedulable, expand, replica_name, schedule


def test_node_ranges_are_handed_out_in_order():
    ranges = ipam.node_ranges(IPv4Network("10.244.0.0/16"), 24, 3)
    assert [str(r) for r in ranges] == ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"]


def test_allocate_keeps_existing_and_fills_lowest_free():
    subnet = IPv4Network("10.244.1.0/24")
    first = ipam.allocate(subnet, {}, ["a", "b", "c"])
    assert first == {"a": "10.244.1.2", "b": "10.244.1.3", "c": "10.244.1.4"}
    # b is deleted: its address is free again, the others keep theirs
    second = ipam.allocate(subnet, first, ["a", "c", "d"])
    assert second == {"a": "10.244.1.2", "c": "10.244.1.4", "d": "10.244.1.3"}


def test_allocate_never_hands_out_network_gateway_or_broadcast():
    subnet = IPv4Network("10.0.0.0/29")  # .0 network, .1 gateway, .7 broadcast: 5 usable
    got = ipam.allocate(subnet, {}, [str(i) for i in range(5)])
    assert sorted(got.values()) == [f"10.0.0.{i}" for i in range(2, 7)]
    with pytest.raises(ipam.Exhausted):
        ipam.allocate(subnet, {}, [str(i) for i in range(6)])


def test_v6_mirrors_the_v4_offset():
    assert ipam.mirror_v6("10.244.1.7", IPv4Network("10.244.1.0/24"),
                          IPv6Network("fd00:10:244:1::/64")) == "fd00:10:244:1::7"


def test_free_underlay_skips_taken_ranges():
    assert str(ipam.free_underlay([])) == "100.64.0.0/24"
    assert str(ipam.free_underlay(["100.64.0.0/24", "100.64.1.0/24"])) == "100.64.2.0/24"


def test_vtep_mac_is_stable_unicast_and_local():
    mac = ipam.vtep_mac("lab", "node1")
    assert mac == ipam.vtep_mac("lab", "node1") != ipam.vtep_mac("lab", "node2")
    first = int(mac.split(":")[0], 16)
    assert first & 0x02 and not first & 0x01


def _deployment(replicas: int) -> kube.Deployment:
    return kube.Deployment.model_validate({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]}}}})


def test_deployment_replicas_have_stable_controller_style_names():
    pods = expand([_deployment(3)])
    assert len({p.name for p in pods}) == 3
    assert all(p.name.startswith("web-") and len(p.name.split("-")) == 3 for p in pods)
    assert [p.name for p in expand([_deployment(2)])] == [p.name for p in pods[:2]]
    assert pods[0].labels["pod-template-hash"] == pods[0].name.split("-")[1]
    assert replica_name("web", "abc", 0) != replica_name("web", "abc", 1)


def test_schedule_spreads_replicas_and_keeps_placed_pods():
    nodes = {"n1": {}, "n2": {}, "n3": {"zone": "b"}}
    pods = expand([_deployment(6)])
    placed = schedule(pods, nodes, {})
    assert sorted(placed.values()).count("n1") == 2 and list(placed.values()).count("n3") == 2
    moved = {pods[0].key: "n3"}
    assert schedule(pods, nodes, moved)[pods[0].key] == "n3"


def _schedule_by_scan(pods, nodes, previous, unavailable):
    """The placement rule read plainly: each new pod to the eligible node with the fewest pods of its owner,
    then the fewest pods, then the first in order."""
    placed, load, owned = {}, dict.fromkeys(nodes, 0), {}
    rank = {n: i for i, n in enumerate(nodes)}

    def ok(p, n):
        return n == p.node_name if p.node_name else all(nodes[n].get(k) == v for k, v in p.node_selector.items())

    def put(p, n):
        placed[p.key], load[n], owned[(p.owner, n)] = n, load[n] + 1, owned.get((p.owner, n), 0) + 1

    for p in pods:
        if previous.get(p.key) in nodes and ok(p, previous[p.key]):
            put(p, previous[p.key])
    for p in pods:
        if p.key not in placed:
            choices = [n for n in nodes if ok(p, n)]
            choices = [n for n in choices if n not in unavailable] or choices
            put(p, min(choices, key=lambda n: (owned.get((p.owner, n), 0) if p.owner else 0, load[n], rank[n])))
    return placed


def test_schedule_places_as_the_plain_rule_does():
    rng = random.Random(7)
    for _ in range(200):
        nodes = {f"n{i}": {"zone": rng.choice("ab")} for i in range(rng.randint(1, 9))}
        pods = [PodIntent("default", f"p{i}", {}, [], owner=rng.choice(["", "Deployment/a", "Deployment/b"]),
                          node_name=rng.choice([""] * 6 + list(nodes)),
                          node_selector=rng.choice([{}, {}, {"zone": "a"}, {"zone": "b"}])) for i in range(40)]
        pods = [p for p in pods if not p.node_name or all(nodes[p.node_name].get(k) == v
                                                          for k, v in p.node_selector.items())]
        pods = [p for p in pods if any(all(nodes[n].get(k) == v for k, v in p.node_selector.items()) for n in nodes)]
        previous = {p.key: rng.choice(list(nodes)) for p in pods if rng.random() < 0.3}
        unavailable = {n for n in nodes if rng.random() < 0.2}
        assert schedule(pods, nodes, previous, unavailable) == _schedule_by_scan(pods, nodes, previous, unavailable)


def test_schedule_honours_node_name_and_selector():
    nodes = {"n1": {"zone": "a"}, "n2": {"zone": "b"}}
    pods = [PodIntent("default", "x", {}, [], node_name="n2"),
            PodIntent("default", "y", {}, [], node_selector={"zone": "a"})]
    assert schedule(pods, nodes, {}) == {"default/x": "n2", "default/y": "n1"}
    with pytest.raises(Unschedulable):
        schedule([PodIntent("default", "z", {}, [], node_selector={"zone": "c"})], nodes, {})


def test_label_selector_expressions():
    sel = kube.LabelSelector.model_validate({"matchLabels": {"app": "web"}, "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["a", "b"]}, {"key": "canary", "operator": "DoesNotExist"}]})
    assert sel.matches({"app": "web", "tier": "a"})
    assert not sel.matches({"app": "web", "tier": "c"})
    assert not sel.matches({"app": "web", "tier": "a", "canary": "1"})
