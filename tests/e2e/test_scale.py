"""A 100-node lab: it comes up in the suite, pods across it reach each other, a Service and its DNS name answer
from both ends, and an apply that touches one node's pods is sent to that node (and the DNS servers) alone."""

from pathlib import Path

import pytest
from conftest import curl, url

from testbed import state
from testbed.agent.pods import host_veth
from testbed.runtime import agent

pytestmark = pytest.mark.topology("tests/e2e/large.yaml")
ONE = """apiVersion: v1
kind: Pod
metadata: {name: extra}
spec: {nodeName: node50, containers: [{name: c, ports: [{containerPort: 8080}]}]}
"""


def test_every_node_is_ready_with_its_agent_answering(lab):
    nodes = lab.status()["nodes"]
    assert len(nodes) == 100
    assert [n["name"] for n in nodes if not n["condition"]["ready"] or n["agent"] != "answering"] == []


def test_pods_at_both_ends_and_a_sample_between_reach_each_other(lab):
    first, last = lab.pod("first"), lab.pod("last")
    assert curl(lab, "first", url(last.ipv4, 8080, "/hostname")) == "last"
    assert curl(lab, "last", url(first.ipv4, 8080, "/hostname")) == "first"
    for pod in lab.pods("default", app="web")[::5]:
        assert curl(lab, "first", url(pod.ipv4, 8080, "/hostname")) == pod.name


def test_the_service_and_its_name_answer_from_both_ends(lab):
    web = {p.name for p in lab.pods("default", app="web")}
    for client in ("first", "last"):
        seen = {curl(lab, client, "http://web.default.svc.cluster.local/hostname") for _ in range(8)}
        assert seen <= web and len(seen) > 1, seen


def test_an_apply_for_one_node_is_sent_to_that_node_alone(lab, tmp_path: Path):
    def received() -> dict[str, dict[str, int]]:
        return {n.name: agent.call(state.run_dir(lab.name) / n.name, "status")["received"] for n in lab.plan.nodes}

    servers = {p.node for p in lab.pods("kube-system")}
    before = received()
    (tmp_path / "one.yaml").write_text(ONE)
    lab.apply(tmp_path / "one.yaml")
    try:
        after = received()
        told = {n for n in after if after[n] != before[n]}
        assert "node50" in told and told <= {"node50", *servers}, sorted(told)
        # a pod no Service selects is no endpoint, so not kube-proxy's business: node50 got its pod, no rules
        was, now = before["node50"], after["node50"]
        sent = {op for op, n in now.items() if n != was.get(op)}
        assert "sync_pods" in sent and "rules" not in sent and "iptables" not in sent, sent
        assert curl(lab, "first", url(lab.pod("extra").ipv4, 8080, "/hostname")) == "extra"
    finally:
        lab.delete(tmp_path / "one.yaml")


CROWD = """apiVersion: apps/v1
kind: Deployment
metadata: {name: crowd}
spec:
  replicas: 300
  selector: {matchLabels: {app: crowd}}
  template:
    metadata: {labels: {app: crowd}}
    spec: {containers: [{name: c, ports: [{containerPort: 8080}]}]}
"""


def test_a_big_delete_lets_go_of_every_pod_at_once_and_the_same_pods_come_back(lab, tmp_path: Path):
    """Past RELEASE_AT pods, every node unpins its departing pods before the sync that waits for them: each
    such node is asked twice, nothing of them stays, and the same names can be made again at once."""
    def syncs() -> dict[str, int]:
        return {n.name: agent.call(state.run_dir(lab.name) / n.name, "status")["received"].get("sync_pods", 0)
                for n in lab.plan.nodes}

    manifest = tmp_path / "crowd.yaml"
    manifest.write_text(CROWD)
    for _ in range(2):  # the second apply makes the very names the delete just removed
        lab.apply(manifest)
        crowd = lab.pods("default", app="crowd")
        assert len(crowd) == 300
        for pod in crowd[::50]:
            assert curl(lab, "first", url(pod.ipv4, 8080, "/hostname")) == pod.name
        holding, before = {p.node for p in crowd}, syncs()
        lab.delete(manifest)
        after = syncs()
        assert {n for n in after if after[n] - before[n] == 2} == holding
        # neither a pinned netns nor a host-side veth of theirs: the kernel destroyed them all
        traces = {p.netns for p in crowd} | {host_veth(p.netns) for p in crowd}
        left = {n: found for n in sorted(holding) if (found := traces & set(agent.call(
            state.run_dir(lab.name) / n, "run", argv=["sh", "-c", "ls /run/netns; ls /sys/class/net"])["stdout"]
            .split()))}
        assert left == {} and lab.pods("default", app="crowd") == []
    assert curl(lab, "last", url(lab.pods("default", app="web")[0].ipv4, 8080, "/hostname"))
