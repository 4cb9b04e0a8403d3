"""`testbed up` wall time for the default topology with the image cached, as a user runs it (CLI process
included), then a re-run of `up` on the running lab."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from common import ROOT, quiet, timed

from testbed import lab


def run(rounds: int = 3) -> dict[str, float]:
    source = ROOT / "topologies" / "default.yaml"
    data = yaml.safe_load(source.read_text())
    data["name"] = "bench-default"
    data["manifests"] = [str(source.parent / m) if isinstance(m, str) else m for m in data["manifests"]]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(data, f)
    path = Path(f.name)
    cli = [sys.executable, "-m", "testbed.cli"]
    cold, warm = [], []
    try:
        for _ in range(rounds):
            lab.down("bench-default", say=quiet)
            t, _ = timed(lambda: subprocess.run([*cli, "up", "-q", str(path)], check=True, capture_output=True))
            cold.append(t)
            t, _ = timed(lambda: subprocess.run([*cli, "up", "-q", str(path)], check=True, capture_output=True))
            warm.append(t)
        t_down, _ = timed(lambda: subprocess.run([*cli, "down", "bench-default"], check=True, capture_output=True))
    finally:
        lab.down("bench-default", say=quiet)
        path.unlink()
    return {"up_s_best": min(cold), "up_s_median": sorted(cold)[len(cold) // 2], "reup_s_median":
            sorted(warm)[len(warm) // 2], "down_s": t_down}


if __name__ == "__main__":
    print(run())
