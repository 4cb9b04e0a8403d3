"""The host's side of the node agent's control socket (JSON lines over a unix socket)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from testbed.agent import protocol
from testbed.agent.version import code_version
from testbed.errors import TestbedError


class AgentError(TestbedError):
    pass


def call(run_dir: Path, op: str, timeout: float = 120.0, **args: Any) -> Any:
    protocol.parse({"op": op, **args})  # a malformed request is this side's bug: fail here, with its name
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(run_dir / "agent.sock"))
        s.sendall(json.dumps({"op": op, **args}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                raise AgentError(f"agent at {run_dir} closed the connection during {op}")
            buf += chunk
    reply = json.loads(buf)
    if not reply["ok"]:
        raise AgentError(f"agent at {run_dir}: {op}: {reply['error']}")
    return reply["result"]


# a new agent's start: a 100-node `up` starts every machine at once, and on two cores a CI run with a second lab
# coming up beside it once had an agent bind its socket only after 30 s
AGENT_START = 60


@retry(retry=retry_if_exception_type(OSError), stop=stop_after_delay(AGENT_START),
       wait=wait_exponential(multiplier=0.005, max=0.2), reraise=True)
def wait_ready(run_dir: Path) -> Any:
    """The agent binds its socket under a temporary name and renames it once it accepts, so a connect that
    succeeds means ready."""
    return call(run_dir, "ping", timeout=5)


class Outdated(AgentError):
    pass


@retry(retry=retry_if_exception_type((OSError, Outdated)), stop=stop_after_delay(30),
       wait=wait_exponential(multiplier=0.005, max=0.2), reraise=True)
def _current(run_dir: Path, want: str) -> None:
    if call(run_dir, "ping", timeout=5).get("version") != want:
        raise Outdated(f"agent at {run_dir} still runs code other than {want}")


def ensure_current(run_dir: Path) -> None:
    """Wait for the agent, and have it re-execute itself if it started from other code than this install's."""
    want = code_version()
    if wait_ready(run_dir).get("version") != want:
        call(run_dir, "reexec", timeout=60)
        _current(run_dir, want)
