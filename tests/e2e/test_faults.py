"""Faults and the control plane, with real traffic: a restarted node's pods answer again (same IPs, no `up`); a
stopped node's pods leave the endpoints, its Deployment pods come back on other nodes, and nothing of them stays
when it returns; a failing liveness probe restarts a process; a partition blocks exactly the pairs across it;
loss, a rate cap and a delay measured; a killed controller comes back and heals; scenarios from the command line
and from pytest; bad input refused."""

import json
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest
from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

from testbed import state
from testbed.lab import up
from testbed.runtime import agent

pytestmark = pytest.mark.topology("tests/e2e/faults.yaml")
HERE = Path(__file__).parent


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "testbed", *args], capture_output=True, text=True, timeout=300)


@retry(retry=retry_if_result(lambda ok: not ok), stop=stop_after_delay(40), wait=wait_fixed(0.25),
       retry_error_callback=lambda _: False)
def eventually(check) -> bool:
    try:
        return bool(check())
    except Exception:
        return False


def connects(lab, source: str, target: str, protocol: str = "tcp") -> bool:
    return lab.probe(source, target, protocol, timeout=1)["result"] == "connected"


def test_a_restarted_node_gets_its_pods_back_with_their_ips(testbed_lab, testbed_fault):
    lab = testbed_lab
    b = lab.pod("default/b")
    testbed_fault.inject("node-restart", node="node2")
    assert eventually(lambda: connects(lab, "default/a", f"{b.ipv4}:8080"))  # no `up`
    assert lab.pod("default/b").ipv4 == b.ipv4


def test_a_killed_controller_comes_back_and_heals(testbed_lab, testbed_fault):
    lab = testbed_lab
    pid = int((state.run_dir(lab.name) / "controller.pid").read_text())
    subprocess.run(["kill", "-9", str(pid)], check=True)
    assert eventually(lambda: int((state.run_dir(lab.name) / "controller.pid").read_text()) != pid)
    c = lab.pod("default/c")
    testbed_fault.inject("node-restart", node="node3")
    assert eventually(lambda: connects(lab, "default/a", f"{c.ipv4}:8080"))


def test_a_stopped_node_loses_its_endpoints_then_its_deployment_pods(testbed_lab, testbed_fault):
    lab = testbed_lab
    before = {p.key for p in lab.pods("default", app="web") if p.node == "node2"}
    assert before
    testbed_fault.inject("node-stop", node="node2")
    assert eventually(lambda: not [e for s in lab.plan.services if s.key == "default/web" for e in s.endpoints
                                   if e.node == "node2" and e.ready])
    # NotReady at once (its container stopped), and the nodes stop sending to its endpoint then, not only once
    # its pods are evicted 6 s later: 20 requests through the Service all answered (one in three went to node2's
    # pod while its endpoint stayed in the rules). The plan counts node2 out from the fault's record on; the
    # nodes' rules follow once the control plane has seen it stop (after its first heal, when that runs)
    assert eventually(lambda: not state.load(lab.name).conditions.get("node2", {"ready": True})["ready"])
    time.sleep(1)
    web = next(s for s in lab.plan.services if s.key == "default/web").cluster_ips[0]
    codes = lab.exec("default/a", ["sh", "-c", f"for i in $(seq 20); do curl -s -o /dev/null -m 1 "
                                               f"-w '%{{http_code}} ' http://{web}/; done"]).stdout.split()
    assert codes == ["200"] * 20, codes
    assert not state.load(lab.name).conditions.get("node2", {}).get("evicted"), "too late: the pods were evicted"
    assert not next(n for n in lab.status()["nodes"] if n["name"] == "node2")["condition"]["ready"]
    # evicted: recreated elsewhere under new names, and the Service answers from them
    assert eventually(lambda: len([p for p in lab.pods("default", app="web") if p.node != "node2"]) == 3)
    assert not before & {p.key for p in lab.pods("default", app="web")}
    assert eventually(lambda: connects(lab, "default/a", "svc/default/web:80"))
    assert lab.pod("default/b").node == "node2"  # a bare pod is not recreated
    # stopped until the fault is cleared: no heal of the control plane starts it (its first one, right after `up`,
    # did when the fault came within its first seconds)
    container = docker.from_env().containers.get(lab.plan.machine("node2").container)
    assert container.status == "exited", container.status
    testbed_fault.clear()  # node2 starts again
    assert eventually(lambda: next(n for n in lab.status()["nodes"] if n["name"] == "node2")["condition"]["ready"])

    def stale_gone() -> bool:
        pods = agent.call(state.run_dir(lab.name) / "node2", "status")["pods"]
        return not {f"{p['namespace']}/{p['name']}" for p in pods} & before

    assert eventually(stale_gone)
    assert eventually(lambda: connects(lab, "default/a", f"{lab.pod('default/b').ipv4}:8080"))


def test_a_node_frozen_past_its_eviction_drops_the_evicted_pods_when_it_thaws(testbed_lab, testbed_fault):
    lab = testbed_lab
    home = lab.pod("default/a").node
    node = next(p.node for p in lab.pods("default", app="web") if p.node != home)
    stale = {p.key: p.ipv4 for p in lab.pods("default", app="web") if p.node == node}
    testbed_fault.inject("node-pause", node=node)
    assert eventually(lambda: state.load(lab.name).conditions.get(node, {}).get("evicted"))
    container = docker.from_env().containers.get(lab.plan.machine(node).container)
    container.reload()
    assert container.status == "paused", container.status  # frozen until cleared, whatever the heals did
    testbed_fault.clear()
    assert eventually(lambda: next(n for n in lab.status()["nodes"] if n["name"] == node)["condition"]["ready"])
    # the thawed agent still held the evicted pods (their Deployment has them elsewhere now): removed, and their
    # addresses answer no more while the Deployment's pods do
    assert eventually(lambda: not {f"{p['namespace']}/{p['name']}" for p in
                                   agent.call(state.run_dir(lab.name) / node, "status")["pods"]} & set(stale))
    assert eventually(lambda: connects(lab, "default/a", f"{lab.pods('default', app='web')[0].ipv4}:8080"))
    assert not any(connects(lab, "default/a", f"{ip}:8080") for ip in stale.values())


@pytest.mark.parametrize("start", ["up", "node-start"])
def test_starting_a_node_a_fault_stopped_ends_the_fault(testbed_lab, testbed_fault, start):
    lab = testbed_lab
    testbed_fault.inject("node-stop", node="node3")
    assert eventually(lambda: not state.load(lab.name).conditions.get("node3", {"ready": True})["ready"])
    if start == "up":
        up(state.load(lab.name).topology_file, say=lambda _: None, name=lab.name)
    else:
        testbed_fault.inject("node-start", node="node3")
    assert not state.load(lab.name).faults  # over: a fault left recorded would keep node3's pods out for good
    assert eventually(lambda: all(p["ready"] for p in lab.status()["pods"] if p["node"] == "node3"))
    assert eventually(lambda: connects(lab, "default/a", "svc/default/web:80"))
    assert connects(lab, "default/a", f"{lab.pod('default/c').ipv4}:8080")


def test_a_node_whose_beats_return_while_the_lab_is_held_stays_ready(testbed_lab):
    """The controller waits for the lab's lock (a long apply holds it) in a thread and reads the beats meanwhile:
    a node whose beats stopped past the grace period, and came back before the lock was free, is not made
    NotReady (a blocked controller did, and at 200 nodes took 55 healthy nodes for dead behind one apply)."""
    lab = testbed_lab
    log = state.run_dir(lab.name) / "controller.log"
    before = log.read_text().count("node node3 is NotReady")
    node3 = docker.from_env().containers.get(f"{lab.name}-node3")
    with state.locked(lab.name):
        node3.pause()
        try:
            time.sleep(6)  # past the 4 s grace period: the controller finds node3 silent and waits for the lab
        finally:
            node3.unpause()
        time.sleep(2)  # node3 beats again while the lab is still held
    time.sleep(2)  # the controller has the lock now
    assert log.read_text().count("node node3 is NotReady") == before
    assert next(n for n in lab.status()["nodes"] if n["name"] == "node3")["condition"]["ready"]
    assert eventually(lambda: connects(lab, "default/a", f"{lab.pod('default/c').ipv4}:8080"))


def test_a_single_stack_pod_has_ipv6_but_no_link_local_address_on_eth0(testbed_lab):
    """A single-stack pod's eth0 makes no link-local address (no duplicate-address detection, no multicast reports
    for each pod); IPv6 itself stays on, with ::1 on lo as in a Kubernetes pod, and IPv4 carries the traffic."""
    lab = testbed_lab
    assert "inet6" not in lab.exec("a", ["ip", "-6", "addr", "show", "dev", "eth0"]).stdout
    assert "::1/128" in lab.exec("a", ["ip", "-6", "addr", "show", "dev", "lo"]).stdout
    assert connects(lab, "default/a", f"{lab.pod('default/b').ipv4}:8080")


def test_a_failing_liveness_probe_restarts_the_process(testbed_lab):
    lab = testbed_lab
    restarts = next(p for p in lab.status()["pods"] if p["name"] == "live")["restarts"]
    lab.exec("default/live", ["rm", "-f", "/tmp/live/ok"])
    assert eventually(lambda: next(p for p in lab.status()["pods"] if p["name"] == "live")["restarts"] > restarts)
    assert eventually(lambda: connects(lab, "default/a", f"{lab.pod('default/live').ipv4}:8081"))


def test_a_partition_blocks_exactly_the_pairs_across_it(testbed_lab, testbed_fault):
    lab = testbed_lab
    ip = {p: lab.pod(f"default/{p}").ipv4 for p in "abc"}
    result = testbed_fault.inject("partition", nodes="node1", **{"from": "node2"})
    assert not connects(lab, "default/a", f"{ip['b']}:8080")
    assert not connects(lab, "default/b", f"{ip['a']}:8080")
    assert connects(lab, "default/a", f"{ip['c']}:8080") and connects(lab, "default/b", f"{ip['c']}:8080")
    testbed_fault.clear(result["fault"]["id"])
    assert connects(lab, "default/a", f"{ip['b']}:8080")


UDP_LOOP = r"""
import socket, sys, time
# numbered probes ("echo N" comes back as N) in batches of 50: a batch waits 50 ms past its last reply for its
# stragglers, not 50 ms for each lost probe, and a late reply is still counted as its own probe's
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
seen = set()
for batch in range(40):
    for i in range(batch * 50, batch * 50 + 50):
        s.sendto(b"echo %d" % i, (sys.argv[1], 5353))
    s.settimeout(0.05)
    while True:
        try:
            seen.add(int(s.recvfrom(512)[0]))
        except OSError:
            break
print(2000 - len(seen))
"""


def test_loss_drops_its_share_of_udp_probes(testbed_lab, testbed_fault):
    lab = testbed_lab
    testbed_fault.inject("loss", node="node1", percent="10")
    lost = int(lab.exec("default/a", ["python3", "-c", UDP_LOOP, lab.pod("default/b").ipv4]).stdout)
    # binomial(2000, 0.1): 200, within 4 standard deviations (13.4)
    assert 146 <= lost <= 254, lost


def test_a_rate_caps_iperf3(testbed_lab, testbed_fault):
    lab = testbed_lab
    testbed_fault.inject("rate", node="node2", rate="20mbit")
    got = json.loads(lab.exec("default/a", ["iperf3", "-c", lab.pod("default/srv").ipv4, "-t", "4", "-J"]).stdout)
    rate = got["end"]["sum_received"]["bits_per_second"]
    assert abs(rate - 20e6) / 20e6 < 0.10, rate


def _rtt(lab, target: str) -> tuple[float, float]:
    """The fastest and the mean round trip of 100 pings: the fastest shows what the path adds, the mean what a
    busy machine's scheduling adds on top."""
    out = lab.exec("default/a", ["ping", "-c", "100", "-i", "0.01", "-q", target]).stdout
    fastest, mean = out.split("min/avg/max/mdev = ")[1].split("/")[:2]
    return float(fastest), float(mean)


def test_a_delay_raises_the_round_trip_by_its_amount(testbed_lab, testbed_fault):
    lab = testbed_lab
    target = lab.pod("default/b").ipv4
    base = _rtt(lab, target)
    testbed_fault.inject("delay", node="node1", ms="20")
    delayed = _rtt(lab, target)
    # no packet goes early, and the fastest goes on time: on a loaded machine the mean carries waits for a CPU
    assert 19 <= delayed[0] - base[0] <= 22 and delayed[1] - base[1] >= 19, (base, delayed)
    listed = json.loads(cli("fault", "list", "--lab", lab.name, "--json").stdout)
    assert listed[0]["notes"]["passed"] >= 100 and listed[0]["notes"]["overflow"] == 0


def test_a_scenario_runs_from_the_command_line_and_from_pytest(testbed_lab, testbed_scenario):
    path = HERE / "scenarios" / "kill-one-endpoint.yaml"
    done = cli("scenario", "run", "--lab", testbed_lab.name, str(path), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["ok"]
    report = testbed_scenario(path)
    assert report["ok"] and report["measures"]["kill"]["outageSeconds"] <= 1.0


@pytest.mark.parametrize(("args", "code", "words"), [
    (["node-stop", "node9"], 3, "nodes: node1, node2, node3"),
    (["loss", "node1", "150"], 2, "outside 0-100"),
    (["rate", "node1", "fast"], 2, "is not a rate"),
    (["partition", "node1,node2", "--from", "node2"], 2, "the groups overlap"),
    (["node-stop", "node1", "--for", "soon"], 2, "is not a duration"),
    (["clear", "nope"], 3, "no fault 'nope'"),
])
def test_bad_input_changes_nothing(testbed_lab, args, code, words):
    done = cli("fault", *args, "--lab", testbed_lab.name)
    assert done.returncode == code and words in done.stderr, done.stderr
    assert json.loads(cli("fault", "list", "--lab", testbed_lab.name, "--json").stdout) == []


def test_a_bad_scenario_names_its_line_and_field(testbed_lab, tmp_path):
    (tmp_path / "bad.yaml").write_text("apiVersion: testbed/v1alpha1\nkind: Scenario\nsteps:\n  - wait: 1s\n"
                                       "  - explode: now\n")
    done = cli("scenario", "run", "--lab", testbed_lab.name, str(tmp_path / "bad.yaml"))
    assert done.returncode == 2 and "bad.yaml:5" in done.stderr and "steps[1].explode" in done.stderr, done.stderr


def test_down_during_faults_leaves_nothing(testbed_labs, tmp_path):
    import yaml
    from leftovers import of

    topo = yaml.safe_load((HERE / "faults.yaml").read_text())
    topo["name"] = "e2e-faults-down"
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(topo))
    lab = testbed_labs.get(tmp_path / "t.yaml")
    for args in (["partition", "node1", "--from", "node2"], ["loss", "node3", "5"], ["rate", "node2", "50mbit"],
                 ["delay", "node1", "5"], ["node-pause", "node3"]):
        done = cli("fault", *args, "--lab", lab.name)
        assert done.returncode == 0, done.stderr
    assert cli("down", lab.name).returncode == 0
    assert of(lab.name) == []
    assert not docker.from_env().containers.list(all=True, filters={"label": f"testbed.lab={lab.name}"})


@pytest.mark.parametrize("mode", ["vxlan", "host-gw", "bgp"])
def test_a_restarted_node_heals_by_itself_in_each_network_mode(routed, mode):
    from testbed.faults import session

    lab = routed(mode)
    b = lab.pod("default/b")
    session.run(lab.name, "node-restart", {"node": "node2"})
    assert eventually(lambda: connects(lab, "default/a", f"{b.ipv4}:8080"))
    assert lab.pod("default/b").ipv4 == b.ipv4


def test_a_router_restart_in_bgp_mode_reconverges(routed):
    from testbed.faults import session

    lab = routed("bgp")
    c = lab.pod("default/c")
    got = session.run(lab.name, "router-restart", {}, probe={"from": "default/a", "target": f"{c.ipv4}:8080",
                                                             "period": 0.02}, timeout=30)
    assert got["measure"]["recovered"], got["measure"]["outages"]
    assert connects(lab, "default/a", f"{c.ipv4}:8080")
