"""Pods that run real processes: a container's command and args run in the pod, supervised (restarted when they
exit), with their output in `testbed logs` and their restarts in status."""

import json
import subprocess
import sys
from pathlib import Path

import docker
import pytest
from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

from testbed.observe.diagnose import diagnose

pytestmark = pytest.mark.topology("tests/e2e/topology.yaml")
MANIFESTS = Path(__file__).parent / "manifests"


def _pod_status(lab, name: str) -> dict:
    return next(p for p in lab.status()["pods"] if p["name"] == name)


@retry(retry=retry_if_result(lambda row: not row["ready"]), stop=stop_after_delay(20), wait=wait_fixed(0.1))
def _ready(lab, name: str) -> dict:
    return _pod_status(lab, name)


def test_a_pod_runs_its_command_and_it_comes_back_when_killed(testbed_lab):
    lab = testbed_lab
    lab.apply(MANIFESTS / "iperf.yaml")
    try:
        iperf = lab.pod("iperf")
        assert _ready(lab, "iperf")["restarts"] == 0
        out = lab.exec("a1", f"iperf3 -c {iperf.ipv4} -t 1 -J")
        assert out.exit_code == 0, out.stderr
        assert json.loads(out.stdout)["end"]["sum_received"]["bytes"] > 0
        node = docker.from_env().containers.get(lab.plan.node(iperf.node).container)
        assert node.exec_run(["pkill", "-x", "iperf3"]).exit_code == 0
        row = _restarted(lab)
        assert row["processes"][0]["lastExit"] is not None
        assert lab.exec("a1", f"iperf3 -c {iperf.ipv4} -t 1").exit_code == 0
        logs = subprocess.run([sys.executable, "-m", "testbed", "logs", "--lab", lab.name, "iperf"],
                              capture_output=True, text=True, check=False)
        assert logs.returncode == 0 and "Server listening on 5201" in logs.stdout
    finally:
        lab.delete(MANIFESTS / "iperf.yaml")


@retry(retry=retry_if_result(lambda row: not (row["ready"] and row["restarts"] >= 1)), stop=stop_after_delay(20),
       wait=wait_fixed(0.1))
def _restarted(lab) -> dict:
    return _pod_status(lab, "iperf")


def test_a_command_that_is_not_in_the_image_crashes_and_says_so(testbed_lab):
    lab = testbed_lab
    lab.apply(MANIFESTS / "crasher.yaml")
    try:
        row = _crashing(lab)
        assert not row["ready"] and row["processes"][0]["lastExit"] == 127
        assert _says(lab, "crasher")  # between two of its restarts it runs for a moment: status says so then
        logs = subprocess.run([sys.executable, "-m", "testbed", "logs", "--lab", lab.name, "crasher"],
                              capture_output=True, text=True, check=False)
        assert "no-such-program" in logs.stdout
    finally:
        lab.delete(MANIFESTS / "crasher.yaml")


@retry(retry=retry_if_result(lambda ok: not ok), stop=stop_after_delay(10), wait=wait_fixed(0.1),
       retry_error_callback=lambda _: False)
def _says(lab, word: str) -> bool:
    """Whether status names word among its reasons, as soon as it does."""
    return any(word in r for r in lab.status()["reasons"])


@retry(retry=retry_if_result(lambda row: row["restarts"] < 2 or row["ready"]), stop=stop_after_delay(20),
       wait=wait_fixed(0.1), retry_error_callback=lambda rs: rs.outcome.result())
def _crashing(lab) -> dict:
    """Its status once it has restarted twice, read while it is down: between two restarts it runs for a moment,
    and is ready then (it has no readiness probe), as a crash-looping container is in Kubernetes."""
    return _pod_status(lab, "crasher")


def _gated_answers(lab, svc_ip: str) -> set[str]:
    out = lab.exec("a1", f"for i in $(seq 12); do curl -s --max-time 1 http://{svc_ip}/hostname; echo; done")
    return {line for line in out.stdout.splitlines() if line}


@retry(retry=retry_if_result(lambda got: not got[0]), stop=stop_after_delay(5), wait=wait_fixed(0.05))
def _until(check) -> tuple[bool, object]:
    value = check()
    return bool(value), value


def test_endpoints_follow_readiness_probes(testbed_lab):
    lab = testbed_lab
    lab.apply(MANIFESTS / "gated.yaml")
    try:
        gated = lab.pods("default", app="gated")
        svc_ip = next(s for s in lab.plan.services if s.name == "gated").cluster_ips[0]
        assert not any(_pod_status(lab, p.name)["ready"] for p in gated)
        assert lab.probe("a1", f"{svc_ip}:80", timeout=1)["result"] == "refused"  # no ready endpoint
        first, second = gated
        node = docker.from_env().containers.get(lab.plan.node(first.node).container)
        node.exec_run(["touch", f"/tmp/ready-{first.name}"])
        assert _until(lambda: _gated_answers(lab, svc_ip) == {first.name})[0]
        assert _pod_status(lab, first.name)["ready"] and not _pod_status(lab, second.name)["ready"]
        node.exec_run(["rm", f"/tmp/ready-{first.name}"])
        assert _until(lambda: lab.probe("a1", f"{svc_ip}:80", timeout=1)["result"] == "refused")[0]
        for pod in gated:  # both, then none: the controller's syncs leave no chain of a count no Service has
            docker.from_env().containers.get(lab.plan.node(pod.node).container).exec_run(
                ["touch", f"/tmp/ready-{pod.name}"])
        assert _until(lambda: _gated_answers(lab, svc_ip) == {first.name, second.name})[0]
        for pod in gated:
            docker.from_env().containers.get(lab.plan.node(pod.node).container).exec_run(
                ["rm", f"/tmp/ready-{pod.name}"])
        assert _until(lambda: lab.probe("a1", f"{svc_ip}:80", timeout=1)["result"] == "refused")[0]
        rules = [f for f in diagnose(lab.name)["findings"] if f["check"] == "kube-proxy rules"]
        assert rules and all(f["status"] == "ok" for f in rules), rules
        assert _ready(lab, "http-probed")["ready"]
        assert not _pod_status(lab, "tcp-never")["ready"]
    finally:
        lab.delete(MANIFESTS / "gated.yaml")


def test_a_control_plane_that_is_gone_shows_in_status_and_up_restarts_it(testbed_lab):
    """A killed controller alone comes back by itself (test_faults.py); its supervisor gone too, `status`
    says so and `up` starts them again."""
    from testbed import lab as labs
    from testbed import state
    from testbed.runtime import readiness

    lab = testbed_lab
    assert _until(lambda: readiness.running(lab.name))[0], "every lab runs a controller"
    assert readiness.stop(lab.name)
    assert _until(lambda: readiness.running(lab.name) is None)[0]
    seen = lab.status()
    assert seen["phase"] == "degraded" and any("controller is not running" in r for r in seen["reasons"])
    labs.up(state.load(lab.name).topology_file, say=lambda _: None)
    assert lab.status()["phase"] == "ready"
    assert _until(lambda: readiness.running(lab.name))[0]


@retry(retry=retry_if_result(lambda rows: any(r["processes"][0]["state"] == "running" or
                                              r["processes"][0]["lastExit"] is None for r in rows)),
       stop=stop_after_delay(20), wait=wait_fixed(0.1))
def _ended(lab) -> list[dict]:
    return [_pod_status(lab, n) for n in ("once-never", "once-onfailure")]


def test_restart_policy_never_and_on_failure_leave_an_ended_process_ended(testbed_lab):
    lab = testbed_lab
    lab.apply(MANIFESTS / "once.yaml")
    try:
        never, onfailure = _ended(lab)
        assert (never["processes"][0]["state"], never["processes"][0]["lastExit"]) == ("failed", 3)
        assert (onfailure["processes"][0]["state"], onfailure["processes"][0]["lastExit"]) == ("completed", 0)
        assert never["restarts"] == onfailure["restarts"] == 0 and not never["ready"]
        assert not any("once-" in r for r in lab.status()["reasons"])  # the pods' state, not a fault of the lab
        lab.apply(MANIFESTS / "once.yaml")  # a later sync leaves them ended
        assert [r["processes"][0]["state"] for r in _ended(lab)] == ["failed", "completed"]
        logs = subprocess.run([sys.executable, "-m", "testbed", "logs", "--lab", lab.name, "once-never"],
                              capture_output=True, text=True, check=False)
        assert logs.stdout.split() == ["ran"]
    finally:
        lab.delete(MANIFESTS / "once.yaml")
