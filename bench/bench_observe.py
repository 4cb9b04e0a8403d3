"""Seeing inside a lab, timed through the command line as a person runs it (Python's start included): diagnose
on the default lab and on a 20-node lab, trace of one cross-node flow, graph of the 20-node lab, and the web
page in headless Chromium (first render of every node, then a new pod on the picture after an apply returns).
Each figure is the best of three runs; all traffic stays in the lab."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import HERE, ROOT, lab_up, timed

from testbed import lab

RUNS = 3
LATE = ("apiVersion: v1\nkind: Pod\nmetadata: {name: late}\nspec: {nodeName: node2, containers: [{name: c, "
        "ports: [{containerPort: 8080}]}]}\n")


def _cli(*args: str) -> float:
    """Seconds one testbed command takes, best of RUNS (its exit code is not the point: diagnose exits 1 on a
    finding, which a benchmark reports rather than stops on)."""
    return min(timed(lambda: subprocess.run([sys.executable, "-m", "testbed", *args], capture_output=True,
                                            timeout=300))[0] for _ in range(RUNS))


def _renamed(path: Path, name: str, folder: Path) -> Path:
    """The topology under another lab name (a user's own `default` lab is left alone); manifests it names by
    path are found beside the original."""
    data = yaml.safe_load(path.read_text())
    data["name"] = name
    data["manifests"] = [str(path.parent / m) if isinstance(m, str) else m for m in data.get("manifests", [])]
    out = folder / path.name
    out.write_text(yaml.safe_dump(data))
    return out


def _ui(name: str, folder: Path) -> dict[str, float]:
    chromium = shutil.which("chromium")
    if not chromium:
        print("  ui: skipped, Chromium is not installed (`make up` installs it)", file=sys.stderr)
        return {}
    from playwright.sync_api import sync_playwright

    proc = subprocess.Popen([sys.executable, "-m", "testbed", "ui", "--lab", name, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = re.search(r"http://\S+", proc.stdout.readline() if proc.stdout else "")
    late = folder / "late.yaml"
    late.write_text(LATE)
    out: dict[str, float] = {}
    try:
        assert url, "testbed ui printed no URL"
        _, plan = lab.current_plan(name)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            firsts, updates = [], []
            for _ in range(RUNS):
                page = browser.new_page()
                start = time.perf_counter()
                page.goto(url.group(0))
                for node in plan.nodes:
                    page.wait_for_selector(f"#graph g#node-{node.name}", timeout=30_000)
                firsts.append(time.perf_counter() - start)
                lab.apply(name, late, say=lambda _: None)
                start = time.perf_counter()
                page.wait_for_selector("#graph g#pod-default-late", timeout=30_000)
                updates.append(time.perf_counter() - start)
                lab.delete(name, late, say=lambda _: None)
                page.wait_for_selector("#graph g#pod-default-late", state="detached", timeout=30_000)
                page.close()
            browser.close()
        out["ui_first_render_s"], out["ui_update_after_apply_s"] = min(firsts), min(updates)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return out


def run() -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        default = _renamed(ROOT / "topologies" / "default.yaml", "bench-observe", folder)
        with lab_up(default) as ctx:
            out["diagnose_default_lab_s"] = _cli("diagnose", "--lab", ctx.lab)
            out["trace_one_flow_s"] = _cli("trace", "--lab", ctx.lab, "default/client", "backend/db:5432")
            out |= _ui(ctx.lab, folder)
        twenty = _renamed(HERE / "topology-twenty.yaml", "bench-twenty", folder)
        start = time.perf_counter()
        with lab_up(twenty) as ctx:
            out["twenty_nodes_up_s"] = time.perf_counter() - start
            out["diagnose_20_nodes_s"] = _cli("diagnose", "--lab", ctx.lab)
            out["graph_20_nodes_svg_s"] = _cli("graph", "--lab", ctx.lab, "--services", "-o",
                                               str(folder / "twenty.svg"))
    return out
