"""One lab over two Docker engines: this machine's, and a second one isolated as another host is
(scripts/second-engine.sh: its own network, mount and PID namespaces, reached only over TCP on a veth "LAN").
Two nodes on each, the router and the external hosts on the first; the hosts' fabrics stitched by VXLAN over the
LAN. Real traffic across the hosts in vxlan and bgp mode: pods with their source IP kept, a ClusterIP spread over
endpoints on both, DNS from a pod on the second host, a NetworkPolicy enforced on both, a LoadBalancer IP held on
the second host reached from the external host; then `down` leaves nothing on either engine, also after a
`kill -9` of `up` halfway."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import curl, url
from tenacity import retry, stop_after_delay, wait_fixed

from testbed import lab as labs
from testbed import state
from testbed.pytest_plugin import Lab
from testbed.runtime.machines import Provider

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "scripts" / "second-engine.sh"
ENGINE, LAN = "tbe2e3", "198.18.0.8/30"
HERE, THERE = "198.18.0.9", "198.18.0.10"
NAME = "e2e-split"
quiet = {"say": lambda _: None}


def topology(mode: str, engine: str, name: str = NAME) -> dict:
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
              "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                       "template": {"metadata": {"labels": {"app": "web"}},
                                    "spec": {"containers": [{"name": "web", "image": "agnhost",
                                                             "args": ["netexec", "--http-port=8080"],
                                                             "ports": [{"name": "http", "containerPort": 8080}]}]}}}}
    pod = lambda n, node, app: {"apiVersion": "v1", "kind": "Pod",  # noqa: E731
                                "metadata": {"name": n, "labels": {"app": app}},
                                "spec": {"nodeName": node, "containers": [{"name": n, "image": "agnhost",
                                                                          "args": ["netexec", "--http-port=8080"],
                                                                          "ports": [{"containerPort": 8080}]}]}}
    return {"apiVersion": "testbed/v1alpha1", "kind": "Topology", "name": name,
            "hosts": [{"name": "here", "address": HERE}, {"name": "there", "engine": engine, "address": THERE}],
            "nodes": [{"name": "node1", "host": "here"}, {"name": "node2", "host": "here"},
                      {"name": "node3", "host": "there"}, {"name": "node4", "host": "there"}],
            "networking": {"network": mode}, "loadBalancer": {"pools": ["198.51.100.0/28"]},
            "manifests": [deploy, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                                   "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}},
                          pod("client", "node1", "client"), pod("far", "node4", "far"), pod("lbpod", "node4", "lb"),
                          {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb"},
                           "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                                    "selector": {"app": "lb"}, "ports": [{"port": 80, "targetPort": 8080}]}}]}


@pytest.fixture(scope="module")
def engine():
    up = subprocess.run(["bash", str(SCRIPT), "up", ENGINE, LAN], capture_output=True, text=True, timeout=120,
                        check=False)
    assert up.returncode == 0, up.stderr
    try:
        yield up.stdout.strip()
    finally:
        labs.down(NAME, **quiet)
        subprocess.run(["bash", str(SCRIPT), "down", ENGINE, LAN], capture_output=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def split(engine, tmp_path_factory):
    folder = tmp_path_factory.mktemp("split")

    def bring_up(mode: str) -> Lab:
        path = folder / "split.yaml"
        path.write_text(yaml.safe_dump(topology(mode, engine)))
        labs.up(path, replace=True, **quiet)
        return Lab(NAME)

    return bring_up


def _on(lab: Lab, ref: str) -> str:
    return next(n.host for n in lab.plan.nodes if n.name == lab.pod(ref).node)


@pytest.mark.parametrize("mode", ["vxlan", "bgp"])
def test_pods_services_and_names_across_hosts(split, mode):
    lab = split(mode)
    assert lab.status()["phase"] == "ready", lab.status()["reasons"]
    assert {n.name: n.host for n in lab.plan.nodes} == {"node1": "here", "node2": "here", "node3": "there",
                                                          "node4": "there"}
    client, far = lab.pod("client"), lab.pod("far")
    assert (_on(lab, "client"), _on(lab, "far")) == ("here", "there")
    # pod to pod across the hosts, both ways, the source IP kept
    assert curl(lab, "client", url(far.ipv4, 8080, "/clientip")).rsplit(":", 1)[0] == client.ipv4
    assert curl(lab, "far", url(client.ipv4, 8080, "/clientip")).rsplit(":", 1)[0] == far.ipv4
    # a ClusterIP, from the second host, by its DNS name, spreads over endpoints on both hosts
    web = {p.name: _on(lab, p.key) for p in lab.pods(app="web")}
    assert set(web.values()) == {"here", "there"}
    seen = {curl(lab, "far", "http://web.default.svc.cluster.local/hostname") for _ in range(40)}
    assert seen == set(web), seen


def test_trace_follows_a_packet_from_one_host_to_the_other(split):
    lab = split("vxlan")
    target = next(p for p in lab.pods(app="web") if p.node == "node1")
    done = subprocess.run([sys.executable, "-m", "testbed", "trace", "--lab", NAME, "default/far",
                           f"default/{target.name}:8080"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "node4" in done.stdout and "VXLAN to node1" in done.stdout and f"source as {lab.pod('far').ipv4}:" \
        in done.stdout, done.stdout


@retry(stop=stop_after_delay(20), wait=wait_fixed(0.5), reraise=True)
def _matrix(lab: Lab, want: dict) -> None:
    got = {(src, dst): lab.probe(src, f"default/{dst}:8080")["result"] for src, dst in want}
    assert got == want


def test_a_policy_holds_on_both_hosts_and_the_outside_reaches_a_second_host_lb(split, tmp_path):
    lab = split("vxlan")
    webs = sorted(lab.pods(app="web"), key=lambda p: p.node)
    here, there = webs[0].name, webs[-1].name
    assert (_on(lab, here), _on(lab, there)) == ("here", "there")
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "web-from-client"},
              "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
                       "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]}}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    lab.apply(path)
    try:
        _matrix(lab, {("default/client", here): "connected", ("default/client", there): "connected",
                      ("default/far", here): "timeout", ("default/far", there): "timeout"})
    finally:
        lab.delete(path)
    # the LoadBalancer IP is answered for by the node with its endpoint, on the second host
    (ip,) = next(s for s in lab.plan.services if s.name == "lb").lb_ips
    got = lab.probe("ext2", f"{ip}:80")
    assert got["result"] == "connected" and got["pod"] == "lbpod", got


def _left(name: str, engine: str) -> list[str]:
    found = [f"here: {m.container_name}" for m in Provider().machines(name)]
    found += [f"there: {m.container_name}" for m in Provider(endpoint=engine).machines(name)]
    found += [str(p) for p in (state.root() / name, state.run_root() / name) if p.exists()]
    return found


def test_down_with_a_host_unreachable_removes_the_rest_and_fails_then_finishes(split, engine):
    """The second host cut off (this machine's end of the LAN loses its address): `status` names it and shows the
    rest; `down` removes what is here, names the host, exits non-zero and keeps the lab's state; once the host
    answers, `down` finishes."""
    split("vxlan")
    lan = f"{ENGINE}-lan"
    subprocess.run(["ip", "addr", "del", f"{HERE}/30", "dev", lan], check=True)
    try:
        seen = subprocess.run([sys.executable, "-m", "testbed", "status", "--lab", NAME, "--json"], cwd=ROOT,
                              capture_output=True, text=True, timeout=120, check=False)
        done = subprocess.run([sys.executable, "-m", "testbed", "down", NAME], cwd=ROOT, capture_output=True,
                              text=True, timeout=120, check=False)
    finally:
        subprocess.run(["ip", "addr", "add", f"{HERE}/30", "dev", lan], check=True)
    # status says which host does not answer, and shows the rest of the lab
    status = json.loads(seen.stdout)
    assert status["phase"] == "degraded" and any(r.startswith("host there does not answer") for r in status["reasons"])
    states = {n["name"]: n["state"] for n in status["nodes"]}
    assert states == {"node1": "running", "node2": "running", "node3": "unreachable (host there)",
                      "node4": "unreachable (host there)"}, states
    assert done.returncode == 4, done.stderr
    assert engine in done.stderr and "could not be reached" in done.stderr
    assert not Provider().machines(NAME) and state.load(NAME) is not None
    assert Provider(endpoint=engine).machines(NAME)  # still there, as the host was cut off
    assert labs.down(NAME, **quiet)
    assert _left(NAME, engine) == []


def test_down_leaves_nothing_on_either_engine_also_after_up_was_killed(split, engine, tmp_path):
    split("vxlan")
    assert labs.down(NAME, **quiet)
    assert _left(NAME, engine) == []
    # `up` killed with SIGKILL once the second host's machines are being made: `down` still finds everything
    path = tmp_path / "killed.yaml"
    path.write_text(yaml.safe_dump(topology("vxlan", engine, "e2e-split-kill")))
    proc = subprocess.Popen([sys.executable, "-m", "testbed", "up", "-q", str(path)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not Provider(endpoint=engine).machines("e2e-split-kill"):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert Provider(endpoint=engine).machines("e2e-split-kill"), "up was killed before it made anything there"
    done = subprocess.run([sys.executable, "-m", "testbed", "down", "e2e-split-kill"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert _left("e2e-split-kill", engine) == []


@pytest.mark.parametrize("endpoint", ["tcp://198.18.0.254:2375", "context:no-such-context"],
                         ids=["unreachable", "unknown"])
def test_an_engine_that_cannot_be_reached_is_refused_naming_its_field(endpoint, tmp_path):
    path = tmp_path / "bad-engine.yaml"
    path.write_text(yaml.safe_dump(topology("vxlan", endpoint, "e2e-bad-engine")))
    done = subprocess.run([sys.executable, "-m", "testbed", "up", str(path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert f"{path}:" in done.stderr and "hosts[1].engine" in done.stderr and "host there" in done.stderr
    assert state.load("e2e-bad-engine") is None and not Provider().machines("e2e-bad-engine")
