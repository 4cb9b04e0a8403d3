"""Reading `nft monitor trace` (pure): lines recorded from the default lab's kernels (tests/unit/traces) are read
into events and named in the lab's terms, the Service by its name and port name, the endpoint by its pod."""

from ipaddress import IPv4Network
from pathlib import Path

import pytest

from testbed import lab
from testbed.observe.tracelog import Names, interpret, parse

ROOT = Path(__file__).parents[2]
TRACES = Path(__file__).parent / "traces"


@pytest.fixture(scope="module")
def names() -> Names:
    loaded = lab.load(ROOT / "topologies" / "default.yaml")
    return Names(lab.build_plan(loaded.topology, loaded.manifests, IPv4Network("100.64.0.0/24")))


def lines(name: str) -> list[str]:
    return (TRACES / name).read_text().splitlines()


def test_parse_reads_packets_rules_and_verdicts():
    events = parse(lines("service-udp-node1.txt"))
    assert events[0].kind == "packet" and events[0].packet == {"iif": "cni0", "saddr": "10.244.0.3",
                                                                "daddr": "10.96.0.10", "dport": 53}
    rule = next(e for e in events if e.kind == "rule" and e.chain == "services")
    assert (rule.table, rule.handle, rule.verdict) == ("testbed-proxy", 62, "goto pick-cl4-n2")
    assert "vmap @cl4-frontends" in rule.text
    assert {e.kind for e in events} == {"packet", "rule", "policy"}


def test_a_retransmission_ends_the_first_packet():
    once = lines("pod-tcp-node1.txt")
    assert len(parse(once + once)) == len(parse(once))


def test_a_service_flow_is_named_by_its_service_and_endpoint(names):
    passage = interpret(parse(lines("service-udp-node1.txt")), names, "udp", {})
    kinds = [s.kind for s in passage.steps]
    assert kinds == ["service", "dnat"]
    assert passage.steps[0].text == "Service kube-system/kube-dns:dns matched 10.96.0.10:53/udp"
    assert passage.steps[0].where == "inet testbed-proxy services #62"
    dns = {p.ipv4: p for p in names.plan.pods if p.namespace == "kube-system"}
    assert passage.daddr in dns
    pod = dns[passage.daddr]
    assert passage.steps[1].text == f"DNAT to {pod.ipv4}:53 (pod {pod.key} on {pod.node})"
    assert (passage.iif, passage.fate) == ("cni0", "forwarded")


def test_a_pod_flow_crosses_without_rules_and_leaves_by_the_tunnel(names):
    sent = interpret(parse(lines("pod-tcp-node1.txt")), names, "tcp", {})
    assert (sent.steps, sent.iif, sent.oif, sent.daddr, sent.dport) == ([], "cni0", "vxlan0", "10.244.1.2", 8080)
    got = interpret(parse(lines("pod-tcp-node2.txt")), names, "tcp", {})
    assert (got.iif, got.oif, got.fate) == ("vxlan0", "cni0", "forwarded")


def test_a_drop_by_a_chains_policy_is_the_end(names):
    drop = ['trace id 1 inet testbed-policy forward packet: iif "cni0" oif "vxlan0" ip saddr 10.244.0.3 '
            'ip daddr 10.244.1.2 tcp dport 8080', "trace id 1 inet testbed-policy forward policy drop"]
    passage = interpret(parse(drop), names, "tcp", {})
    assert passage.fate == "dropped"
    assert passage.steps[-1].text == "dropped by the policy of testbed-policy forward"


def test_names_know_pods_and_entries(names):
    assert names.pod("10.244.0.3") == "pod default/client on node1"
    assert names.pod("192.0.2.1") == "no pod"
    assert names.service("10.96.0.10", "udp", 53) == "kube-system/kube-dns:dns"
    assert names.entry("KUBE-SVC-NOTANID") is None
