"""The NetworkPolicy evaluator against the cases' expectations, cell by cell (9x9 pods, 2 ports, 2 protocols):
the e2e tests hold the datapath to the same expectations, so model and datapath must agree."""

from ipaddress import IPv4Network
from pathlib import Path

import pytest
from netpol_cases import CASES, PODS, PORTS, PROTOCOLS, Case, expect

from testbed.model import loader
from testbed.observe import matrix
from testbed.plan import cluster
from testbed.policy.evaluate import decide

TOPOLOGY = Path(__file__).parents[1] / "e2e" / "policy.yaml"


def plan_with(objects):
    loaded = loader.load_topology(TOPOLOGY)
    base = cluster.build(loaded.topology, loaded.manifests, IPv4Network("100.64.0.0/24"))
    ips = {p.key: p.ipv4 for p in base.pods}
    docs = [loader.Doc(o, "case.yaml") for o in objects(ips)]
    extra = loader.load_manifests(docs)
    keys = {m.key for m in extra}
    manifests = [m for m in loaded.manifests if m.key not in keys] + extra
    return cluster.build(loaded.topology, manifests, IPv4Network("100.64.0.0/24"),
                         {k: {"node": v.node, "ipv4": v.ipv4} for k, v in {p.key: p for p in base.pods}.items()})


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_model_matches_the_spec(case: Case):
    plan = plan_with(lambda ips: case.policies(ips) + case.manifests)
    pods = {p.key: p for p in plan.pods}
    wrong = [(s, d, pr, po) for s in PODS for d in PODS for pr in PROTOCOLS for po in PORTS
             if matrix.expected(plan, pods[s], pods[d], po, pr, "pod") != expect(case, s, d, pr, po)]
    assert not wrong, f"{len(wrong)} cells differ, e.g. {wrong[:5]}"


def test_no_policy_means_everything_is_open():
    plan = plan_with(lambda ips: [])
    pods = {p.key: p for p in plan.pods}
    assert all(decide([], plan.namespaces, pods[s], "", pods[d], "", 80, "TCP").allowed for s in PODS for d in PODS)


def test_explanation_names_the_policies_and_the_admitting_rule():
    case = next(c for c in CASES if c.name == "union-of-two-policies")
    plan = plan_with(case.policies)
    pods = {p.key: p for p in plan.pods}
    allowed = decide(plan.policies, plan.namespaces, pods["z/b"], pods["z/b"].ipv4, pods["x/a"], pods["x/a"].ipv4,
                     80, "tcp")
    assert allowed.allowed and allowed.ingress.policies == ["x/from-y", "x/from-z"]
    assert allowed.ingress.by == "x/from-z ingress[0]"
    denied = decide(plan.policies, plan.namespaces, pods["x/b"], pods["x/b"].ipv4, pods["x/a"], pods["x/a"].ipv4,
                    80, "tcp")
    assert not denied.allowed and denied.egress.allowed and denied.ingress.by is None


def test_dns_via_matrix_needs_egress_to_the_dns_pods():
    deny = pol_plan = plan_with(lambda ips: [{
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "d", "namespace": "x"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
            {"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}}])
    pods = {p.key: p for p in pol_plan.pods}
    assert matrix.expected(deny, pods["x/a"], pods["y/a"], 80, "tcp", "pod")
    # the lab's DNS pods come with the DNS installer at `up`; with none planned here, names cannot resolve
    assert not matrix.expected(deny, pods["x/a"], pods["y/a"], 80, "tcp", "dns")
