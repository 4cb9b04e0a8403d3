"""Pods wired by Debian's reference CNI plugins (bridge and host-local, portmap, bandwidth, tuning), in vxlan and
in bgp: every pod reaches every other across nodes with no NAT, ClusterIPs and DNS names answer, a NetworkPolicy
is enforced cell by cell, a hostPort answers an external host on its node's address, and the bandwidth
annotations hold, measured with iperf3 within 15 %. `testbed cni check` passes on every pod."""

import json
import subprocess
import sys

import docker
import pytest
from cnilab import EGRESS, INGRESS, MODES, bring_up
from netpol_cases import BY_NAME, NAMESPACES
from policylab import apply_case, check, undo_case

from testbed import lab as labs
from testbed.observe import matrix


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cniref")
    yield lambda mode: bring_up(folder, mode)
    labs.down("e2e-cniref", say=lambda _: None)


@pytest.fixture(params=MODES)
def lab(request, reference):
    return reference(request.param)


def test_pods_services_and_names_across_nodes(lab):
    cells = matrix.run(lab.name, NAMESPACES, [], [80], ["tcp"], "pod")
    assert cells and all(c.observed for c in cells), [c for c in cells if not c.observed][:3]
    seen = lab.probe("x/a", f"{lab.pod('y/b').ipv4}:80")
    assert seen["result"] == "connected" and seen["client"].rsplit(":", 1)[0] == lab.pod("x/a").ipv4  # no NAT
    assert all(c.observed for c in matrix.run(lab.name, ["x", "y"], [], [80], ["tcp"], "service"))
    assert all(c.observed for c in matrix.run(lab.name, ["x", "y"], [], [80], ["udp"], "dns"))


def test_a_network_policy_is_enforced(lab, tmp_path):
    case = BY_NAME["allow-from-namespace-y"]
    path = apply_case(lab, case, tmp_path)
    try:
        check(lab, case)
    finally:
        undo_case(lab, case, path)


def test_a_host_port_answers_from_outside(lab):
    node = lab.plan.node(lab.pod("default/hp").node)
    ext = docker.from_env().containers.get(lab.plan.machine("ext2").container)
    got = ext.exec_run(["curl", "-s", "--max-time", "5", f"http://{node.underlay_ip}:8088/hostname"])
    assert got.output.decode() == "hp"


def _iperf(lab, reverse: bool) -> float:
    server = lab.pod("default/bw").ipv4
    # the shaped rate is the steady one: TCP's first second (slow start against the token bucket's burst) is
    # left out, as iperf3 -O does, so a loaded machine's slow ramp is not read as the limit
    args = ["iperf3", "-c", server, "-p", "5201", "-t", "4", "-O", "1", "-J"] + (["-R"] if reverse else [])
    out = lab.exec("y/a", args).stdout
    return json.loads(out)["end"]["sum_received"]["bits_per_second"]


def test_bandwidth_annotations_hold(lab):
    into, out_of = _iperf(lab, False), _iperf(lab, True)
    assert abs(into - INGRESS) / INGRESS < 0.15, into
    assert abs(out_of - EGRESS) / EGRESS < 0.15, out_of


def test_cni_check_passes_on_every_pod(lab):
    done = subprocess.run([sys.executable, "-m", "testbed", "cni", "check", "--lab", lab.name, "--json"],
                          capture_output=True, text=True, timeout=120)
    found = json.loads(done.stdout)
    assert done.returncode == 0 and len(found) == len(lab.plan.pods), [f for f in found if not f["ok"]]
