"""Pods wired through CNI: the creation rate of 300 pods over 3 nodes with the reference plugins (bridge and
host-local, portmap, bandwidth, tuning: four plugin processes a pod) against the built-in wiring on the same
lab shape, and `testbed cni test` (the whole battery, both nodes' parts) with each preset. All in the lab."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from common import HERE, deployment, lab_up, quiet, timed

from testbed import lab

PODS = 300


def _rate(wiring: str, folder: Path) -> tuple[float, str]:
    topo = yaml.safe_load((HERE / "topology-pods.yaml").read_text())
    topo.update(name=f"bench-cni-{wiring}", cni=wiring)
    path = folder / f"{wiring}.yaml"
    path.write_text(yaml.safe_dump(topo))
    manifest = folder / "many.yaml"
    manifest.write_text(deployment(PODS))
    with lab_up(path) as ctx:
        _, done = timed(lambda: lab.apply(ctx.lab, manifest, say=quiet))
        rate = PODS / done.timings["Creating pods"]
        if wiring == "builtin":
            return rate, ctx.lab
        lab.delete(ctx.lab, manifest, say=quiet)
    return rate, ""


def run() -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        out["cni_reference_pods_per_s"], _ = _rate("reference", folder)
        out["cni_builtin_pods_per_s"], _ = _rate("builtin", folder)
        topo = yaml.safe_load((HERE / "topology-pods.yaml").read_text())
        topo["name"] = "bench-cni-test"
        path = folder / "test.yaml"
        path.write_text(yaml.safe_dump(topo))
        with lab_up(path) as ctx:
            for preset in ("builtin", "reference"):
                took, _ = timed(lambda p=preset: subprocess.run(
                    [sys.executable, "-m", "testbed", "cni", "test", "--lab", ctx.lab, "--preset", p],
                    capture_output=True, check=False, timeout=300))
                out[f"cni_test_{preset}_s"] = took
    return out
