"""The agent protocol through the engine alone (runtime/agent.Relayed), as a machine on another host is reached:
the same answers as through the agent's socket, a command's input and output carried both ways, and a stream the
machine's restart broke opened anew."""

import pytest
from conftest import curl, url
from tenacity import retry, stop_after_delay, wait_fixed

from testbed import state
from testbed.runtime import agent
from testbed.runtime.machines import Provider

pytestmark = pytest.mark.topology("tests/e2e/topology.yaml")


def test_a_relayed_agent_answers_as_its_socket_does(lab):
    node = lab.plan.node("node2")
    relayed = agent.Relayed(Provider().get(node.container))
    try:
        here = agent.call(state.run_dir(lab.name) / node.name, "status")
        there = relayed.call("status")
        assert there["node"] == "node2" and {p["netns"] for p in there["pods"]} == {p["netns"] for p in here["pods"]}
        # a command in a pod, with its input, through the relay: the pod's own address answers
        pod = next(p for p in lab.plan.pods if p.node == "node2" and p.ipv4)
        got = relayed.call("run", argv=["sh", "-c", "cat; ip -4 -o addr show dev eth0"], netns=pod.netns,
                           input="marker\n")
        assert got["code"] == 0 and got["stdout"].startswith("marker\n") and f" {pod.ipv4}/" in got["stdout"]
    finally:
        relayed.close()


@retry(stop=stop_after_delay(30), wait=wait_fixed(0.5), reraise=True)
def _pods_back(relayed: agent.Relayed) -> None:
    """The control plane heals the restarted node (Docker's start event): its pods come back."""
    reply = relayed.call("status")
    assert reply["pods"] and all(p["present"] for p in reply["pods"])


def test_a_relayed_stream_survives_its_machine_restarting(lab):
    node = lab.plan.node("node3")
    machine = Provider().get(node.container)
    relayed = agent.Relayed(machine)
    try:
        before = relayed.call("ping")
        machine.lifecycle("restart")
        agent.wait_ready(state.run_dir(lab.name) / node.name)
        after = relayed.call("ping")  # the old stream ended with the container: a new one is opened
        assert after["node"] == before["node"] == "node3"
        _pods_back(relayed)
        pod = next(p for p in lab.plan.pods if p.node == "node3" and p.ports)
        assert curl(lab, "a1", url(pod.ipv4, pod.ports[0].port, "/hostname")) == pod.name
    finally:
        relayed.close()
