"""`testbed ui` in headless Chromium (Debian's, driven by Playwright): the page loads behind its token, shows
every node and pod, shows a clicked pod's details, renders a matrix run as a grid, lights a trace's hops, and
follows an apply within two seconds. A screenshot is kept in test-artifacts/."""

import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.topology("tests/e2e/topology.yaml")
ARTIFACTS = Path(os.environ.get("TESTBED_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]


@pytest.fixture
def page_url(testbed_lab):
    proc = subprocess.Popen([sys.executable, "-m", "testbed", "ui", "--lab", testbed_lab.name, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    url = re.search(r"http://\S+", line)
    assert url, (line, proc.stderr.read() if proc.poll() is not None else "")
    yield url.group(0)
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip("Chromium is not installed (`make up` installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def test_the_page_needs_its_token_and_the_loopback_host(page_url):
    bare = page_url.split("?")[0]
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(bare + "api/lab", timeout=5)
    assert info.value.code == 403
    host = re.search(r"http://([^/]+)/", page_url).group(1)
    assert host.startswith("127.0.0.1:")
    forged = urllib.request.Request(page_url.replace("/?", "/api/version?"), headers={"Host": "evil.example:80"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(forged, timeout=5)
    assert info.value.code == 403


def test_a_taken_port_exits_4_naming_it(testbed_lab):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        got = subprocess.run([sys.executable, "-m", "testbed", "ui", "--lab", testbed_lab.name, "--port", str(port)],
                             capture_output=True, text=True, timeout=30, check=False)
    assert got.returncode == 4 and f"port {port}" in got.stderr


def test_the_page_shows_the_lab_a_pod_a_matrix_and_a_trace_and_follows_an_apply(testbed_lab, page_url, browser,
                                                                               tmp_path):
    lab = testbed_lab
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    page.goto(page_url)
    page.wait_for_selector("#graph svg")
    for node in lab.plan.nodes:
        assert page.locator(f"#graph g#node-{node.name}").count() == 1
    assert page.locator('#graph g.node[id^="pod-"]').count() == len(lab.plan.pods)
    page.locator("#graph g#pod-default-a1").click()
    page.wait_for_selector("#details dl")
    assert lab.pod("a1").ipv4 in page.inner_text("#details .detail-ips")
    page.fill("#m-ns", "other")
    page.fill("#m-ports", "80")
    page.click("#run-matrix")
    page.wait_for_selector("table.matrix td.allowed", timeout=30_000)
    assert page.locator("table.matrix td.disagree").count() == 0
    page.select_option("#t-from", "default/a1")
    page.fill("#t-to", f"{lab.pod('c').ipv4}:8080")
    page.click("#run-trace")
    page.wait_for_selector("#trace ol", timeout=30_000)
    lit = {e.get_attribute("id") for e in page.locator("#graph .hop").all()}
    assert {"pod-default-a1", "node-node1", "node-node3", "pod-default-c"} <= lit, lit
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui.png"), full_page=True)
    extra = tmp_path / "late.yaml"
    extra.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: late}\nspec: {nodeName: node2, containers: "
                     "[{name: c, ports: [{containerPort: 8080}]}]}\n")
    lab.apply(extra)
    try:
        # the page asks every second; bench/bench_observe.py measures how soon it shows
        page.wait_for_selector("#graph g#pod-default-late", timeout=10_000)
    finally:
        lab.delete(extra)
