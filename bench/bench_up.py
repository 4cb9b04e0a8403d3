"""`testbed up` wall time for the default topology with the image cached, as a user runs it (CLI process
included), then a re-run of `up` on the running lab; and what one agent request costs by each way to a machine:
its socket (a machine on this host), an exec of the engine per request, and one exec stream kept open
(runtime/agent.Relayed, a machine on another host)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import ROOT, quiet, timed

from testbed import lab, state
from testbed.runtime import agent
from testbed.runtime.machines import Provider


def _ms(fn: object, n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 2)


def transport(name: str) -> dict[str, float]:
    """Median ms of an agent `ping` each way."""
    run_dir = state.run_dir(name) / "node2"
    machine = Provider().get(f"{name}-node2")
    relayed = agent.Relayed(machine)

    def exec_once() -> None:
        once = agent.Relayed(machine)
        once.call("ping")
        once.close()

    try:
        return {"agent_socket_ms": _ms(lambda: agent.call(run_dir, "ping"), 200),
                "agent_exec_per_request_ms": _ms(exec_once, 20),
                "agent_relayed_stream_ms": _ms(lambda: relayed.call("ping"), 200)}
    finally:
        relayed.close()


def run(rounds: int = 3) -> dict[str, float]:
    source = ROOT / "topologies" / "default.yaml"
    data = yaml.safe_load(source.read_text())
    data["name"] = "bench-default"
    data["manifests"] = [str(source.parent / m) if isinstance(m, str) else m for m in data["manifests"]]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(data, f)
    path = Path(f.name)
    cli = [sys.executable, "-m", "testbed"]  # what the `testbed` command runs
    cold, warm = [], []
    try:
        for _ in range(rounds):
            lab.down("bench-default", say=quiet)
            t, _ = timed(lambda: subprocess.run([*cli, "up", "-q", str(path)], check=True, capture_output=True))
            cold.append(t)
            t, _ = timed(lambda: subprocess.run([*cli, "up", "-q", str(path)], check=True, capture_output=True))
            warm.append(t)
        ways = transport("bench-default")
        t_down, _ = timed(lambda: subprocess.run([*cli, "down", "bench-default"], check=True, capture_output=True))
    finally:
        lab.down("bench-default", say=quiet)
        path.unlink()
    return {"up_s_best": min(cold), "up_s_median": sorted(cold)[len(cold) // 2], "reup_s_median":
            sorted(warm)[len(warm) // 2], "down_s": t_down, **ways}


if __name__ == "__main__":
    print(run())
