"""`testbed diagnose` on real labs: clean when healthy in every pod network mode; each fault broken in on purpose
is named, on the right node, and `testbed up` heals it."""

import json
import subprocess
import sys
from pathlib import Path

import docker
import pytest
from routedlab import MODES
from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

from testbed.observe.diagnose import diagnose
from testbed.runtime import readiness

HERE = Path(__file__).parent


def sh(container: str, command: str) -> tuple[int, str]:
    result = docker.from_env().containers.get(container).exec_run(["sh", "-c", command])
    return result.exit_code, result.output.decode()


def bad(report: dict) -> list[dict]:
    return [f for f in report["findings"] if f["status"] != "ok"]


def named(report: dict, module: str, subject: str, words: str) -> bool:
    return any(f["module"] == module and f["subject"] == subject and words in f["message"] for f in bad(report))


@pytest.mark.parametrize("mode", MODES)
def test_diagnose_is_clean_on_a_healthy_lab_in_each_network_mode(routed, mode):
    lab = routed(mode)
    report = diagnose(lab.name)
    assert report["ok"] and bad(report) == [], bad(report)
    checks = {(f["module"], f["check"]) for f in report["findings"]}
    assert {("machines", "agent"), ("underlay", "underlay"), ("pods", "pods"), ("dns", "cluster DNS"),
            ("kube-proxy", "kube-proxy rules"), (mode, "cross-node traffic")} <= checks
    assert (mode, {"vxlan": "vxlan", "host-gw": "host-gw routes", "bgp": "bgp"}[mode]) in checks
    assert sum(f["check"] == "cross-node traffic" for f in report["findings"]) == 3  # one pod per node pair


def test_each_fault_is_named_with_its_node_and_up_heals_it(routed):
    lab = routed("vxlan")
    n1, n2, n3 = (lab.plan.node(n) for n in ("node1", "node2", "node3"))
    dns = lab.pods("kube-system")[0]
    # the lab's control plane stopped, so nothing heals behind diagnose's back: the stopped DNS server flips its
    # probe, and the controller's re-sync may reload node2's table (`up` starts the control plane again)
    readiness.stop(lab.name)
    sh(n1.container, f"ip route del {n3.cidr4}")  # a pod route
    sh(n2.container, "nft flush table inet testbed-proxy")  # kube-proxy's table
    sh(n3.container, "nft delete table inet testbed-egress")  # egress NAT
    sh(lab.plan.node(dns.node).container, f"kill -STOP $(ip netns pids {dns.netns})")  # a DNS server
    sh(n3.container, "ip link set eth0 down")  # a node's underlay link
    report = diagnose(lab.name)
    assert not report["ok"]
    assert named(report, "vxlan", "node1", f"no route to {n3.cidr4}")
    assert named(report, "kube-proxy", "node2", "table inet testbed-proxy differs from the plan")
    assert named(report, "egress", "node3", "table inet testbed-egress is missing")
    assert named(report, "dns", dns.key, "does not answer")
    assert named(report, "underlay", "node3", "node3:eth0 is down")
    assert all(f["hint"] for f in bad(report))
    cli = subprocess.run([sys.executable, "-m", "testbed", "diagnose", "--lab", lab.name], capture_output=True,
                         text=True, check=False)
    assert cli.returncode == 1 and "FAIL" in cli.stdout and "node3:eth0 is down" in cli.stdout
    routed("vxlan")  # up
    assert _controller(lab.name)
    healed = diagnose(lab.name)
    assert healed["ok"] and bad(healed) == [], bad(healed)


def test_a_service_without_endpoints_is_a_warning_with_its_selector_and_the_closest_pods(routed, tmp_path):
    lab = routed("vxlan")
    svc = tmp_path / "svc.yaml"
    svc.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: typo}\n"
                   "spec: {selector: {app: b, tier: web}, ports: [{port: 80, targetPort: 8080}]}\n")
    lab.apply(svc)
    try:
        report = diagnose(lab.name)
        (warn,) = [f for f in bad(report) if f["subject"] == "default/typo"]
        assert warn["status"] == "warn" and "no pod matches its selector" in warn["message"]
        assert "selector: app=b,tier=web" in warn["evidence"]
        assert any(line.startswith("closest: default/b (1 of 2 labels: app=b)") for line in warn["evidence"])
        assert report["ok"]  # a warning, not a failure: the rules are right
    finally:
        lab.delete(svc)


@retry(retry=retry_if_result(lambda ok: not ok), stop=stop_after_delay(20), wait=wait_fixed(0.2))
def _clean(name: str) -> bool:
    return diagnose(name)["ok"]


def test_bgp_a_killed_bird_comes_back_and_a_stopped_one_is_named_and_healed(routed):
    lab = routed("bgp")
    node2 = lab.plan.node("node2")
    assert sh(node2.container, "pkill -9 -x bird")[0] == 0
    assert _clean(lab.name)  # its agent restarts it, and its sessions come back
    sh(node2.container, "pkill -STOP -x bird")
    report = diagnose(lab.name)
    assert named(report, "bgp", "node2", "node2:") or named(report, "bgp", "router", "session n_node2")
    routed("bgp")  # up
    assert _clean(lab.name)


def test_diagnose_json_lists_every_finding(routed):
    lab = routed("vxlan")
    cli = subprocess.run([sys.executable, "-m", "testbed", "diagnose", "--lab", lab.name, "--json"],
                         capture_output=True, text=True, check=False)
    report = json.loads(cli.stdout)
    assert cli.returncode == 0 and report["counts"]["fail"] == 0 and report["counts"]["ok"] > 20
    assert {"check", "status", "subject", "message", "evidence", "hint", "module"} <= set(report["findings"][0])


@retry(retry=retry_if_result(lambda pid: not pid), stop=stop_after_delay(10), wait=wait_fixed(0.1),
       retry_error_callback=lambda state: state.outcome.result())
def _controller(name: str) -> int | None:
    return readiness.running(name)
