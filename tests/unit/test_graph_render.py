"""`testbed graph`'s pictures, from real plans (the default lab and 20 nodes) through the real Graphviz: one SVG
element per node, per pod, per Service and per link, found by the ids the web page relies on; Mermaid text that
mermaid's own parser (npm's, in headless Chromium) accepts, with every node and pod in it."""

import os
import shutil
import xml.etree.ElementTree as ET
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from testbed import lab
from testbed.observe import graph
from testbed.plan.cluster import Plan

ROOT = Path(__file__).parents[2]
SVG = "{http://www.w3.org/2000/svg}"
MERMAID = ROOT / ".tools" / "node_modules" / "mermaid" / "dist" / "mermaid.min.js"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def plan_of(path: str) -> Plan:
    loaded = lab.load(ROOT / path)
    return lab.build_plan(loaded.topology, loaded.manifests, IPv4Network("100.64.0.0/24"))


@pytest.fixture(scope="module", params=["topologies/default.yaml", "bench/topology-twenty.yaml",
                                        "topologies/bgp.yaml"])
def plan(request) -> Plan:
    return plan_of(request.param)


def elements(svg: bytes) -> dict[str, set[str]]:
    """Graphviz's SVG: group class ('cluster', 'node', 'edge') → the ids of its groups."""
    out: dict[str, set[str]] = {}
    for g in ET.fromstring(svg).iter(f"{SVG}g"):
        if g.get("id"):
            out.setdefault(g.get("class", ""), set()).add(g.get("id"))
    return out


def test_the_svg_has_one_element_per_node_and_per_pod(plan):
    found = elements(graph.render(graph.dot(plan), "svg"))
    assert found["cluster"] >= {f"node-{n.name}" for n in plan.nodes}
    pods = {e for e in found["node"] if e.startswith("pod-")}
    assert pods == {graph.ident("pod", p.key) for p in plan.pods}
    assert "fabric" in found["node"]
    if plan.router:
        assert {graph.ident("machine", m.name) for m in [plan.router, *plan.externals]} <= found["node"]


def test_the_pod_network_is_drawn_as_it_is(plan):
    found = elements(graph.render(graph.dot(plan), "svg"))
    net, n = plan.topology.networking.network, len(plan.nodes)
    links = {e for e in found.get("edge", set()) if e.startswith(f"{net}-")}
    if net == "bgp":
        assert {e for e in found["edge"] if e.startswith("bgp-")} == {f"bgp-{x.name}" for x in plan.nodes}
    elif n <= 8:
        assert len(links) == n * (n - 1) // 2
    else:  # a mesh of 190 arcs is summarised, and only broken links are drawn
        assert not links and "mesh" in found["node"]


def test_a_down_link_and_a_stopped_node_are_red():
    plan = plan_of("bench/topology-twenty.yaml")
    observed = {"links": [{"type": "vxlan", "from": "node1", "to": "node7", "state": "down"}],
                "nodes": [{"name": "node3", "state": "exited"}]}
    text = graph.dot(plan, observed)
    found = elements(graph.render(text, "svg"))
    assert "vxlan-node1-node7" in found["edge"]
    assert "1 down" in text
    root = ET.fromstring(graph.render(text, "svg"))
    node3 = next(g for g in root.iter(f"{SVG}g") if g.get("id") == "node-node3")
    assert node3.find(f"{SVG}path").get("stroke") == "red"


def test_services_and_policies_are_drawn_between_their_pods():
    plan = plan_of("bench/topology-twenty.yaml")
    found = elements(graph.render(graph.dot(plan, services=True, policies=True), "svg"))
    assert "svc-default-web" in found["node"]
    web = [p for p in plan.pods if p.labels.get("app") == "web"]
    text = graph.dot(plan, services=True, policies=True)
    assert sum(1 for line in text.splitlines() if line.startswith('  "svc-default-web" -> "pod-')) == len(web)
    # 40 x 40 pairs go through one box for the rule: an arrow in from each peer, one out to each selected pod
    box = "netpol-default-web-from-web-ingress-rule-1"
    assert box in found["node"]
    assert sum(1 for line in text.splitlines() if line.endswith(f'-> "{box}" [color="#2e7d32" constraint=false];')) \
        == len(web)
    assert sum(1 for line in text.splitlines() if line.startswith(f'  "{box}" -> "pod-')) == len(web)


SMALL = """apiVersion: testbed/v1alpha1
kind: Topology
name: small
nodes: 2
manifests:
  - {apiVersion: v1, kind: Pod, metadata: {name: client, labels: {app: client}}, spec: {containers: [{name: c}]}}
  - {apiVersion: v1, kind: Pod, metadata: {name: web, labels: {app: web}}, spec: {containers: [{name: c}]}}
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: web-from-client}
    spec:
      podSelector: {matchLabels: {app: web}}
      ingress: [{from: [{podSelector: {matchLabels: {app: client}}}]}]
"""


def test_a_small_policy_is_an_arrow_per_pair_named_by_the_policy(tmp_path):
    (tmp_path / "small.yaml").write_text(SMALL)
    text = graph.dot(plan_of(str(tmp_path / "small.yaml")), policies=True)
    arrows = [line for line in text.splitlines() if 'label="web-from-client"' in line]
    assert arrows == ['  "pod-default-client" -> "pod-default-web" [color="#2e7d32" label="web-from-client" '
                      'fontcolor="#2e7d32" constraint=false];']


def test_twenty_nodes_stay_in_rows():
    """Legible at 20: the picture is a grid, not a strip 20 boxes wide."""
    root = ET.fromstring(graph.render(graph.dot(plan_of("bench/topology-twenty.yaml")), "svg"))
    width, height = (float(root.get(k).removesuffix("pt")) for k in ("width", "height"))
    assert width < 3 * height


@pytest.fixture(scope="module")
def mermaid_page():
    if not MERMAID.exists():
        pytest.skip("mermaid is not installed here (`make tools` installs it with npm)")
    if not os.path.exists(CHROMIUM):
        pytest.skip("Chromium is not installed (`make up` installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.set_content("<html><body></body></html>")
        page.add_script_tag(path=str(MERMAID))
        page.evaluate("mermaid.initialize({startOnLoad: false})")
        yield page
        browser.close()


def test_mermaid_parses_and_renders_every_node_and_pod(plan, mermaid_page):
    text = graph.mermaid(plan, services=True)
    error = mermaid_page.evaluate("async t => { try { await mermaid.parse(t); return '' } "
                                  "catch (e) { return String(e) } }", text)
    assert error == ""
    svg = mermaid_page.evaluate("async t => (await mermaid.render('g' + Date.now(), t)).svg", text)
    for node in plan.nodes:
        assert f"node-{node.name}" in svg
    for pod in plan.pods:
        assert graph.ident("pod", pod.key) in svg


def test_mermaid_parser_refuses_what_is_broken(mermaid_page):
    """The check above can fail: mermaid's parser does refuse bad text."""
    error = mermaid_page.evaluate("async t => { try { await mermaid.parse(t); return '' } "
                                  "catch (e) { return String(e) } }", "flowchart TB\n  a[[x --- ")
    assert error


def test_mermaid_marks_a_down_session_red():
    plan = plan_of("topologies/bgp.yaml")
    observed = {"bgp": {n.name: {"sessions": [{"info": "Established"}]} for n in plan.nodes}}
    observed["bgp"]["node2"] = {"sessions": [{"info": "Active"}]}
    lines = graph.mermaid(plan, observed=observed).splitlines()
    links = [line for line in lines if "---" in line or "===" in line]
    red = [int(line.split()[1]) for line in lines if line.strip().startswith("linkStyle")]
    assert [links[i].strip() for i in red] == ["node-node2 ==BGP=== machine-router"]
