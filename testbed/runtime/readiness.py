"""Pod readiness as the nodes' agents observe it (readiness.json in each node's run folder, written by the
agent's prober), and the lab's controller process that turns its changes into endpoints: started here, one
per lab, stopped by `down`. The controller itself is control/controller.py, kept running by
control/supervisor.py."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

from testbed import state

if TYPE_CHECKING:
    from testbed.plan.cluster import Plan

READY_TIMEOUT = 30.0  # how long `up` waits for probed pods to pass
KICK, KICKING = 0.2, 3.0  # seconds between the probes `up` asks of a pod that is not ready yet; for how long


def awaited(plan: Plan, unwired: set[str]) -> dict[str, bool]:
    """The probed pods `up` waits for (key → ready as planned): only those whose probes can pass. A NotReady
    node's pods wait for the control plane; a pod whose CNI plugins failed has no network to be probed through
    until a later sync wires it."""
    return {p.key: p.ready for p in plan.pods
            if p.probes and p.node not in plan.unavailable and p.key not in unwired}


def observed(name: str) -> dict[str, bool]:
    """Pod key → ready, for every pod with a readiness probe that an agent reports."""
    out: dict[str, bool] = {}
    run = state.run_dir(name)
    for path in sorted(run.glob("*/readiness.json")) if run.is_dir() else []:
        with contextlib.suppress(OSError, ValueError):
            out |= {k: bool(v["ready"]) for k, v in json.loads(path.read_text())["pods"].items()}
    return out


def wait(name: str, pods: dict[str, str], timeout: float = READY_TIMEOUT) -> dict[str, bool]:
    """Until every pod of pods (key → its node) is reported ready, or timeout: what was observed last. Their
    agents probe the pods not ready yet at once, and again every KICK seconds while they are not, for KICKING
    seconds: a server still starting would otherwise wait a whole period for its next probe; one that is not
    starting is left to its period."""
    from testbed.runtime import agent

    by_node: dict[str, list[str]] = {}
    for pod, node in pods.items():
        by_node.setdefault(node, []).append(pod)
    kicked, start = 0.0, time.monotonic()

    def kick(seen: dict[str, bool]) -> None:
        nonlocal kicked
        kicked = time.monotonic()
        for node, keys in by_node.items():
            if waiting := [k for k in keys if not seen.get(k)]:
                with contextlib.suppress(OSError, agent.AgentError):
                    agent.call(state.run_dir(name) / node, "probe", pods=waiting, timeout=5)

    @retry(retry=retry_if_result(lambda seen: not all(seen.get(k) for k in pods)), stop=stop_after_delay(timeout),
           wait=wait_fixed(0.05), retry_error_callback=lambda s: s.outcome.result() if s.outcome else {})
    def poll() -> dict[str, bool]:
        seen = observed(name)
        if time.monotonic() - kicked >= KICK and time.monotonic() - start < KICKING:
            kick(seen)
        return seen

    return poll()


def _pid_file(name: str, what: str = "controller") -> Path:
    return state.run_dir(name) / f"{what}.pid"


def _alive(name: str, what: str) -> int | None:
    """The pid of the lab's controller (or its supervisor), checked against its command line."""
    try:
        pid = int(_pid_file(name, what).read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if f"testbed.control.{what}".encode() in cmdline and name.encode() in cmdline else None


def running(name: str) -> int | None:
    """The controller's pid, if one runs for this lab."""
    return _alive(name, "controller")


def supervised(name: str) -> bool:
    """Whether the lab's supervisor runs: its controller runs, or is being started again."""
    return _alive(name, "supervisor") is not None


def start(name: str) -> int:
    """The lab's control plane (a supervisor that keeps its controller running), unless one runs; it outlives
    the command that started it."""
    version = state.run_dir(name) / "controller.version"
    pid = _alive(name, "supervisor")
    if pid and version.exists() and version.read_text() == code_version():
        return pid
    if pid:  # running older code: replaced, as an agent re-executes itself
        stop(name)
    run = state.run_dir(name)
    run.mkdir(parents=True, exist_ok=True)
    with open(run / "controller.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "testbed.control.supervisor", name],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                close_fds=True)
    _pid_file(name, "supervisor").write_text(str(proc.pid))
    version.write_text(code_version())
    return proc.pid


def code_version() -> str:
    """A digest of the package's code: the controller runs all of it, so any change is news to it."""
    import hashlib

    import testbed

    digest = hashlib.sha256()
    for path in sorted(Path(testbed.__file__).parent.rglob("*.py")):
        digest.update(str(path).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def stop(name: str) -> bool:
    """The supervisor and its controller, together (they share a process group)."""
    pid = _alive(name, "supervisor")
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    _gone(pid)
    with contextlib.suppress(ProcessLookupError):  # whatever of it is left
        os.killpg(pid, signal.SIGKILL)
    return True


@retry(retry=retry_if_result(lambda alive: alive), stop=stop_after_delay(0.5), wait=wait_fixed(0.02),
       retry_error_callback=lambda _: True)
def _gone(pid: int) -> bool:
    """Waits for the process to end (it is not our child, so it cannot be waited for); half a second, then it
    is killed: what it holds is written atomically, and a controller of 100 nodes took over a second to exit."""
    return Path(f"/proc/{pid}").exists() and b"testbed.control" in Path(f"/proc/{pid}/cmdline").read_bytes()
