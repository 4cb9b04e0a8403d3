"""Pods that run real processes: a container's command and args run in the pod, supervised (restarted when they
exit), with their output in `testbed logs` and their restarts in status."""

import json
import subprocess
import sys
from pathlib import Path

import docker
import pytest
from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

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
        assert any("crasher" in r for r in lab.status()["reasons"])
        logs = subprocess.run([sys.executable, "-m", "testbed", "logs", "--lab", lab.name, "crasher"],
                              capture_output=True, text=True, check=False)
        assert "no-such-program" in logs.stdout
    finally:
        lab.delete(MANIFESTS / "crasher.yaml")


@retry(retry=retry_if_result(lambda row: row["restarts"] < 2), stop=stop_after_delay(20), wait=wait_fixed(0.1))
def _crashing(lab) -> dict:
    return _pod_status(lab, "crasher")
