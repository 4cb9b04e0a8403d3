"""`testbed graph` on running labs, through the command line: the SVG holds one element per node and per pod of
the lab's plan, PNG and Mermaid come out, and a BGP session really down (its BIRD stopped) is drawn red."""

import subprocess
import sys
import xml.etree.ElementTree as ET

import docker
import pytest
from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

from testbed.observe.status import collect

SVG = "{http://www.w3.org/2000/svg}"


def graph(lab: str, *args: str) -> bytes:
    proc = subprocess.run([sys.executable, "-m", "testbed", "graph", "--lab", lab, *args], capture_output=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def groups(svg: bytes) -> dict[str, ET.Element]:
    return {g.get("id"): g for g in ET.fromstring(svg).iter(f"{SVG}g") if g.get("id")}


@pytest.mark.topology("tests/e2e/topology.yaml")
def test_the_default_labs_picture_has_each_node_and_pod(testbed_lab, tmp_path):
    plan = testbed_lab.plan
    found = groups(graph(testbed_lab.name, "--services"))
    assert {f"node-{n.name}" for n in plan.nodes} <= found.keys()
    pods = {k for k, g in found.items() if k.startswith("pod-") and g.get("class") == "node"}
    assert pods == {"pod-" + p.key.replace("/", "-") for p in plan.pods}
    assert {k for k in found if k.startswith("svc-")}
    graph(testbed_lab.name, "--format", "png", "-o", str(tmp_path / "lab.png"))
    assert (tmp_path / "lab.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = graph(testbed_lab.name, "--format", "mermaid").decode()
    assert text.startswith("flowchart TB") and all(f"node-{n.name}" in text for n in plan.nodes)


@retry(retry=retry_if_result(lambda ok: not ok), stop=stop_after_delay(30), wait=wait_fixed(0.5))
def _session(lab: str, node: str, established: bool) -> bool:
    """Whether the router sees node's sessions as established (a stopped BIRD cannot say so itself)."""
    sessions = [s for s in collect(lab)["bgp"]["router"]["sessions"] if s["name"].startswith(f"n_{node}_")]
    return bool(sessions) and all(s["info"] == "Established" for s in sessions) == established


def _stroke(svg: bytes, ident: str) -> str:
    return groups(svg)[ident].find(f"{SVG}path").get("stroke")


def test_a_bgp_session_that_is_down_is_red(routed):
    lab = routed("bgp")
    node3 = docker.from_env().containers.get(lab.plan.node("node3").container)
    assert _session(lab.name, "node3", True)
    assert _stroke(graph(lab.name), "bgp-node3") != "red"
    node3.exec_run(["pkill", "-STOP", "-x", "bird"])
    try:
        assert _session(lab.name, "node3", False)  # the router's hold timer (3 s) expires
        svg = graph(lab.name)
        assert _stroke(svg, "bgp-node3") == "red"
        assert _stroke(svg, "bgp-node1") != "red"
    finally:
        node3.exec_run(["pkill", "-CONT", "-x", "bird"])
    assert _session(lab.name, "node3", True)
