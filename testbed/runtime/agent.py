"""The host's side of the node agent's control socket (JSON lines over a unix socket)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tenacity import (
    Retrying,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
    wait_fixed,
)

from testbed.agent import protocol
from testbed.agent.version import code_version
from testbed.errors import TestbedError

if TYPE_CHECKING:
    from testbed.runtime.machines import Machine


class AgentError(TestbedError):
    pass


def _request(op: str, args: dict[str, Any]) -> bytes:
    protocol.parse({"op": op, **args})  # a malformed request is this side's bug: fail here, with its name
    return json.dumps({"op": op, **args}).encode() + b"\n"


def _result(line: bytes, where: object, op: str) -> Any:
    reply = json.loads(line)
    if not reply["ok"]:
        raise AgentError(f"agent at {where}: {op}: {reply['error']}")
    return reply["result"]


_relays: dict[Any, Relayed] = {}
_relays_lock = threading.Lock()


def _relay(run_dir: Path) -> Relayed | None:
    """The relay to a machine on another host, when its run folder here says it is there (machines.elsewhere); one
    per machine and process."""
    from testbed.runtime import machines

    where = machines.elsewhere(run_dir)
    if where is None:
        return None
    with _relays_lock:
        if (relayed := _relays.get(where)) is None:
            # a machine made anew under its name: the old one's stream may never say it ended (an engine keeps a
            # removed container's exec connection open), so it is closed, not asked
            for old in [k for k in _relays if k.container == where.container and k.engine == where.engine]:
                _relays.pop(old).close()
            engine = machines.provider(where.engine)
            relayed = _relays[where] = Relayed(lambda: engine.get(where.container), where.container)
        return relayed


def call(run_dir: Path, op: str, timeout: float = 120.0, **args: Any) -> Any:
    """The agent of a machine: through its socket in the machine's run folder, or relayed through its engine when
    the machine is on another host."""
    if (relayed := _relay(run_dir)) is not None:
        return relayed.call(op, timeout, **args)
    request = _request(op, args)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(run_dir / "agent.sock"))
        s.sendall(request)
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                raise AgentError(f"agent at {run_dir} closed the connection during {op}")
            buf += chunk
    return _result(buf, run_dir, op)


class Unreachable(AgentError, ConnectionError):
    """No answer through the engine (its agent not listening yet, the machine gone): retried as a socket's refusal
    is (wait_ready)."""


class Relayed:
    """The agent of a machine reached through its engine alone, as on another host: one exec of `socat` in the
    machine relays to the agent's socket there, and stays open for every request after (the engine's exec costs
    about 0.1 s to start, a request on the open stream about as much as on the socket: bench_up's
    `agent transport`). One request at a time; a stream that ended since the last one is opened anew."""

    RELAY = ["socat", "-", "UNIX-CONNECT:/run/testbed/agent.sock"]

    def __init__(self, machine: Machine | Callable[[], Machine | None], name: str = "") -> None:
        """machine: the machine, or how to find it (its container, when first asked, and again when the one found
        is gone: `down` and `up` made it anew under the same name)."""
        self._find = machine if callable(machine) else None
        self._machine: Machine | None = None if callable(machine) else machine
        self.stream: Any = None
        self.name = name or getattr(machine, "container_name", "")
        self.lock = threading.Lock()

    @property
    def machine(self) -> Machine:
        if self._machine is None and self._find is not None:
            self._machine = self._find()
        if self._machine is None:
            raise Unreachable(f"container {self.name} is missing")
        return self._machine

    def call(self, op: str, timeout: float = 120.0, **args: Any) -> Any:
        request = _request(op, args)
        # the relay could not connect (the machine restarted, its agent starts): the request never reached the
        # agent, so it is sent again, as wait_ready waits for a socket
        unsent = retry_if_exception(lambda err: isinstance(err, EOFError) and "connect(" in str(err))
        with self.lock:
            try:
                for attempt in Retrying(retry=unsent, stop=stop_after_delay(min(timeout, 10)), wait=wait_fixed(0.1),
                                        reraise=True):
                    with attempt:
                        return self._once(request, op, timeout)
            except (OSError, EOFError) as err:
                raise Unreachable(f"agent of {self.name}, through its engine: {op}: {err}") from None
        raise AssertionError("unreachable")

    def _once(self, request: bytes, op: str, timeout: float) -> Any:
        try:
            if self.stream is not None and self.stream.ended():  # the machine restarted since: open anew
                self.close()
            if self.stream is None:
                try:
                    self.stream = self.machine.stream(self.RELAY)
                except OSError:  # the engine's own errors are OSErrors too (requests'): found anew next time
                    if self._find is not None:
                        self._machine = None
                    raise
            self.stream.settimeout(timeout)
            self.stream.send(request)
            return _result(self.stream.line(), self.name, op)
        except (OSError, EOFError):
            self.close()
            raise

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None


# a new agent's start: a 100-node `up` starts every machine at once, and on two cores a CI run with a second lab
# coming up beside it once had an agent bind its socket only after 30 s
AGENT_START = 60


def _retrying(on: type[BaseException] | tuple[type[BaseException], ...], seconds: float) -> Retrying:
    """A fresh retry loop per call: `up` waits for every machine's agent from its own thread, and a decorated
    function's shared statistics raced between them (tenacity's KeyError 'idle_for')."""
    return Retrying(retry=retry_if_exception_type(on), stop=stop_after_delay(seconds),
                    wait=wait_exponential(multiplier=0.005, max=0.2), reraise=True)


def wait_ready(run_dir: Path) -> Any:
    """The agent binds its socket under a temporary name and renames it once it accepts, so a connect that
    succeeds means ready."""
    for attempt in _retrying(OSError, AGENT_START):
        with attempt:
            return call(run_dir, "ping", timeout=5)
    raise AssertionError("unreachable")


class Outdated(AgentError):
    pass


def _current(run_dir: Path, want: str) -> None:
    for attempt in _retrying((OSError, Outdated), 30):
        with attempt:
            if call(run_dir, "ping", timeout=5).get("version") != want:
                raise Outdated(f"agent at {run_dir} still runs code other than {want}")


def ensure_current(run_dir: Path) -> None:
    """Wait for the agent, and have it re-execute itself if it started from other code than this install's."""
    want = code_version()
    if wait_ready(run_dir).get("version") != want:
        call(run_dir, "reexec", timeout=60)
        _current(run_dir, want)
