"""How testbed grows: `up`, a 1-pod `apply`, a no-change re-sync and `down`, through the CLI, at several node
counts; then pods by the thousand on the largest lab. Machine memory is MemAvailable's drop (the containers'
cgroups, the pods' kernel objects and the host-side processes together). A log-log plot of each series, with
its fitted exponent (1.0: linear), shows growth at a glance.

The sizes: TESTBED_BENCH_NODES (default 10,50,100; the issue's full series is 10,50,100,200,250) and
TESTBED_BENCH_PODS (default 1000,5000; add 10000 on a machine with the memory for it). Where same-page merging
(KSM) is on, the largest lab's memory is read again once ksmd has gone over it (at most TESTBED_BENCH_KSM_WAIT
seconds, default 600). TESTBED_BENCH_RUNS repeats the whole series and prints medians (see run)."""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, deployment

PLOT = Path(os.environ.get("TESTBED_BENCH_PLOT", "/tmp/testbed-scale.png"))
ONE_POD = """apiVersion: v1
kind: Pod
metadata: {name: one, labels: {app: one}}
spec: {containers: [{name: c, ports: [{containerPort: 8080}]}]}
"""
ONE_SERVICE = ONE_POD + """---
apiVersion: v1
kind: Service
metadata: {name: one}
spec: {selector: {app: one}, ports: [{port: 80, targetPort: 8080}]}
"""


def _sizes(var: str, default: str) -> list[int]:
    return [int(x) for x in os.environ.get(var, default).split(",") if x.strip()]


def _cli(*args: str) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "testbed", *args], capture_output=True, cwd=ROOT, timeout=1800,
                          text=True)
    if done.returncode:  # what the command said, before the bench stops on it
        print(done.stdout[-2000:], done.stderr[-4000:], file=sys.stderr)
        done.check_returncode()
    return time.perf_counter() - start


def _available_mib() -> float:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:")) / 1024


def _merged(limit: float) -> bool:
    """Wait until ksmd has gone over every mergeable page three times since now (it compares a page over two
    passes before it merges it), at most limit seconds; False when same-page merging is off."""
    ksm = Path("/sys/kernel/mm/ksm")
    try:
        if (ksm / "run").read_text().strip() != "1":
            return False
        start, deadline = int((ksm / "full_scans").read_text()), time.monotonic() + limit
        while int((ksm / "full_scans").read_text()) < start + 3 and time.monotonic() < deadline:
            time.sleep(5)
        return True
    except OSError:
        return False


def _topology(path: Path, nodes: int) -> None:
    path.write_text(f"apiVersion: testbed/v1alpha1\nkind: Topology\nname: bench-scale\nnodes: {nodes}\n")


def _exponent(xs: list[float], ys: list[float]) -> float:
    """The slope of log y against log x, by least squares."""
    lx, ly = [math.log(x) for x in xs], [math.log(max(y, 1e-6)) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    den = sum((x - mx) ** 2 for x in lx)
    return sum((x - mx) * (y - my) for x, y in zip(lx, ly, strict=True)) / den if den else 0.0


def _plot(series: dict[str, tuple[list[int], list[float]]]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  (no plot: matplotlib is a dev dependency, `make venv` installs it)", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, (xs, ys) in series.items():
        if len(xs) > 1:
            ax.loglog(xs, ys, marker="o", label=f"{label} (exponent {_exponent(xs, ys):.2f})")
    ax.set_xlabel("nodes, or pods for the pod series")
    ax.set_ylabel("seconds, or MiB for memory")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=100)
    print(f"  plot: {PLOT}", file=sys.stderr)


def run() -> dict[str, float]:
    """TESTBED_BENCH_RUNS times the whole series (default 1): each figure is then the median of the runs, beside
    its lowest and highest, with TESTBED_BENCH_SETTLE_S seconds between runs (default 60: after a 10,000-pod
    lab's `down` the kernel frees its namespaces for a while, and a run started then is slower)."""
    runs: list[dict[str, float]] = []
    for i in range(int(os.environ.get("TESTBED_BENCH_RUNS", "1"))):
        if i:
            time.sleep(float(os.environ.get("TESTBED_BENCH_SETTLE_S", "60")))
        runs.append(_series())
    if len(runs) == 1:
        return runs[0]
    out: dict[str, float] = {}
    for key in runs[0]:
        values = [r[key] for r in runs if key in r]
        out[key] = statistics.median(values)
        out[f"{key}_lowest"], out[f"{key}_highest"] = min(values), max(values)
    return out


def _series() -> dict[str, float]:
    out: dict[str, float] = {}
    nodes, pods = _sizes("TESTBED_BENCH_NODES", "10,50,100"), _sizes("TESTBED_BENCH_PODS", "1000,5000")
    series: dict[str, tuple[list[int], list[float]]] = {}

    def note(key: str, label: str, x: int, value: float) -> None:
        out[key] = value
        series.setdefault(label, ([], []))[0].append(x)
        series[label][1].append(value)
        print(f"  {key}: {value:.2f}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        topo, one, service = Path(tmp) / "scale.yaml", Path(tmp) / "one.yaml", Path(tmp) / "service.yaml"
        one.write_text(ONE_POD)
        service.write_text(ONE_SERVICE)
        for i, count in enumerate(nodes):
            _topology(topo, count)
            free = _available_mib()
            note(f"scale_up_s_{count}_nodes", "up (s)", count, _cli("up", "-q", str(topo)))
            time.sleep(2)  # let the kernel's and the agents' first work settle before memory is read
            note(f"scale_mem_mib_{count}_nodes", "memory (MiB)", count, used := free - _available_mib())
            note(f"scale_mem_mib_per_node_{count}_nodes", "memory a node (MiB)", count, used / count)
            if i == len(nodes) - 1 and _merged(float(os.environ.get("TESTBED_BENCH_KSM_WAIT", "600"))):
                # idle, once same-page merging has folded what the agents copied alike (minutes at 200 nodes)
                note(f"scale_mem_mib_per_node_{count}_nodes_merged", "memory a node, merged (MiB)", count,
                     (free - _available_mib()) / count)
            note(f"scale_one_pod_apply_s_{count}_nodes", "1-pod apply (s)", count,
                 _cli("apply", "--lab", "bench-scale", "-f", str(one)))
            note(f"scale_resync_s_{count}_nodes", "no-change re-sync (s)", count,
                 _cli("apply", "--lab", "bench-scale", "-f", str(one)))
            # a new Service: every node's kube-proxy rules change, in parallel; apply returns once all hold them
            note(f"scale_one_service_apply_s_{count}_nodes", "1-Service apply (s)", count,
                 _cli("apply", "--lab", "bench-scale", "-f", str(service)))
            if i == len(nodes) - 1:  # pods by the thousand on the largest lab
                many = Path(tmp) / "many.yaml"
                for n in pods:
                    many.write_text(deployment(n))
                    free = _available_mib()
                    note(f"scale_pods_apply_s_{n}_pods_on_{count}", "pods apply (s)", n,
                         _cli("apply", "--lab", "bench-scale", "-f", str(many)))
                    note(f"scale_pods_mem_mib_{n}_pods", "pods memory (MiB)", n, free - _available_mib())
                    note(f"scale_resync_s_at_{n}_pods", "re-sync at pods (s)", n,
                         _cli("apply", "--lab", "bench-scale", "-f", str(many)))
            note(f"scale_down_s_{count}_nodes", "down (s)", count, _cli("down", "bench-scale"))
    for label, (xs, ys) in series.items():
        if len(xs) > 1:
            out[f"exponent {label}"] = _exponent([float(x) for x in xs], ys)
    _plot(series)
    return out


if __name__ == "__main__":
    print(run())
