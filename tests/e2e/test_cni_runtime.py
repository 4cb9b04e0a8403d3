"""The node agent as a CNI runtime, seen by a recording plugin chained after testbed's own (tests/cni/recorder):
ADD in the conflist's order and DEL in reverse, the spec's environment and the kubelet's CNI_ARGS, prevResult
chained, runtimeConfig holding only the capabilities a plugin declares, the cached result handed to DEL, a
plugin that hangs killed after the topology's timeout (its pod not ready, with the message; the others fine),
and the pods' addresses taken from the results (the plugin starts its range at .100, the plan would not)."""

import json
import subprocess
import sys

import docker
import pytest
import yaml

from testbed.agent.cniplugin import host_veth

pytestmark = pytest.mark.topology("tests/e2e/cni-recorded.yaml")


def calls(lab, node: str) -> list[dict]:
    box = docker.from_env().containers.get(lab.plan.node(node).container)
    text = box.exec_run(["cat", "/run/testbed/cni-calls.jsonl"]).output.decode()
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def of(lab, node: str, pod: str, command: str) -> list[dict]:
    return [c for c in calls(lab, node) if c["command"] == command
            and f"K8S_POD_NAME={pod};" in c["env"].get("CNI_ARGS", "") + ";"]


def test_add_runs_the_chain_in_order_with_the_specs_environment(testbed_lab):
    lab = testbed_lab
    pod = lab.pod("default/a")
    adds = of(lab, "node1", "a", "ADD")
    assert [c["plugin"] for c in adds[-2:]] == ["first", "second"]
    env = adds[-1]["env"]
    assert env["CNI_NETNS"] == f"/run/netns/{pod.netns}" and env["CNI_IFNAME"] == "eth0"
    assert "/run/testbed/cni/bin" in env["CNI_PATH"].split(":")
    args = dict(kv.split("=", 1) for kv in env["CNI_ARGS"].split(";"))
    assert (args["K8S_POD_NAMESPACE"], args["K8S_POD_NAME"]) == ("default", "a")
    assert args["K8S_POD_INFRA_CONTAINER_ID"] == env["CNI_CONTAINERID"] and len(args["K8S_POD_UID"]) == 36


def test_testbeds_plugin_makes_a_hairpin_port_with_no_ipv6_address_of_its_own(testbed_lab):
    lab = testbed_lab
    env = of(lab, "node1", "a", "ADD")[-1]["env"]
    port = host_veth(env["CNI_CONTAINERID"], env["CNI_IFNAME"])
    box = docker.from_env().containers.get(lab.plan.node("node1").container)
    assert "hairpin on" in box.exec_run(["ip", "-d", "link", "show", port]).output.decode()
    assert box.exec_run(["ip", "-6", "-o", "addr", "show", "dev", port]).output.decode() == ""


def test_prev_result_and_runtime_config(testbed_lab):
    lab = testbed_lab
    first, second = of(lab, "node1", "a", "ADD")[-2:]
    assert first["stdin"]["prevResult"]["ips"][0]["address"].startswith(lab.pod("default/a").ipv4 + "/")
    assert second["stdin"]["prevResult"] == first["stdin"]["prevResult"]
    runtime = first["stdin"]["runtimeConfig"]
    assert runtime["portMappings"] == [{"hostPort": 8088, "containerPort": 8080, "protocol": "tcp"}]
    assert runtime["bandwidth"]["ingressRate"] == 10_000_000
    assert "runtimeConfig" not in second["stdin"]  # it declares no capability


def test_addresses_come_from_the_result(testbed_lab):
    lab = testbed_lab
    a, b = lab.pod("default/a"), lab.pod("default/b")
    assert int(a.ipv4.rsplit(".", 1)[1]) >= 100 and int(b.ipv4.rsplit(".", 1)[1]) >= 100  # the plugin's range
    assert lab.probe("default/a", f"{b.ipv4}:8080")["result"] == "connected"
    got = lab.probe("default/a", "svc/default/b:80")
    assert got["result"] == "connected" and got["pod"] == "b"
    status = {p["name"]: p for p in lab.status()["pods"]}
    assert status["a"]["ips"] == [a.ipv4] and status["a"]["ready"]


B = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "b", "labels": {"app": "b"}},
     "spec": {"nodeName": "node2", "containers": [{"name": "c", "ports": [{"containerPort": 8080}]}]}}


def test_a_hung_plugin_is_killed_and_its_pod_alone_is_not_ready(testbed_lab, tmp_path):
    lab = testbed_lab
    slow = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "slow"},
            "spec": {"nodeName": "node2", "containers": [{"name": "c", "ports": [{"containerPort": 8080}]}]}}
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump(slow))
    lab.apply(path)
    try:
        pod = next(p for p in lab.status()["pods"] if p["name"] == "slow")
        assert not pod["ready"]
        assert any("timed out after 10 s and was killed" in w for w in pod["warnings"]), pod
        assert lab.pod("default/slow").ready is False  # out of any Service's endpoints
        assert lab.probe("default/a", "svc/default/b:80")["result"] == "connected"  # the others are fine
    finally:
        lab.delete(path)


def test_del_runs_in_reverse_with_the_cached_result(testbed_lab, tmp_path):
    lab = testbed_lab
    added = of(lab, "node2", "b", "ADD")[-1]["stdin"]["prevResult"]
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump(B))
    lab.delete(path)
    try:
        dels = of(lab, "node2", "b", "DEL")
        assert [c["plugin"] for c in dels[-2:]] == ["second", "first"]
        assert dels[-1]["stdin"]["prevResult"] == added  # the cached result
    finally:
        lab.apply(path)


def test_gc_and_status_are_asked_of_plugins_that_speak_1_1(testbed_lab):
    lab = testbed_lab
    gc = [c for c in calls(lab, "node1") if c["command"] == "GC"]
    assert gc, "no GC call"
    valid = {a["containerID"] for a in gc[-1]["stdin"]["cni.dev/valid-attachments"]}
    assert next(c for c in of(lab, "node1", "a", "ADD"))["env"]["CNI_CONTAINERID"] in valid
    done = subprocess.run([sys.executable, "-m", "testbed", "cni", "check", "--lab", lab.name], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout
    assert any(c["command"] == "STATUS" for c in calls(lab, "node1"))
