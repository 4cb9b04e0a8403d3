"""The engine boundary, as kind's nodes and providers: a Machine is one container of a lab (a node, the router, an
external host) with `exec()` and `netns_path()`; a Provider finds a lab's machines. Exec, probe, status and the
pipeline's context go through here, so the engine behind it (the Docker SDK in runtime/docker.py) is one module.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import docker
from docker.models.containers import Container

from testbed.errors import EnvironmentProblem
from testbed.runtime import docker as rt
from testbed.runtime.terminal import Terminal


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


class Machine:
    def __init__(self, client: docker.DockerClient, container: Container) -> None:
        self.client, self.container = client, container

    @property
    def name(self) -> str:
        """The machine's name in its lab (node1, router, ext1)."""
        return str(self.container.labels.get(rt.NODE, self.container.name))

    @property
    def role(self) -> str:
        return str(self.container.labels.get(rt.ROLE, "node"))

    @property
    def state(self) -> str:
        return str(self.container.status)

    def require_running(self, what: str = "") -> Machine:
        """Itself if it runs; otherwise a clear error (exit 4) that says how to heal."""
        if self.state != "running":
            raise EnvironmentProblem(f"{what or 'container'} {self.container.name} is {self.state}; "
                                     "`testbed up` restarts it and restores its pods")
        return self

    def pid(self) -> int:
        return rt.pid(self.container)

    def netns_path(self) -> str:
        """Its network namespace, as the host opens it: its init's (tini), which never changes namespace."""
        return f"/proc/{self.pid()}/ns/net"

    def exec(self, command: list[str], stream: bool = False) -> Result:
        """Runs command in the machine; with stream, its output goes to this process's as it comes."""
        api = self.client.api
        exec_id = api.exec_create(self.container.id, command)["Id"]
        out: list[bytes] = []
        errs: list[bytes] = []
        for chunk_out, chunk_err in api.exec_start(exec_id, stream=True, demux=True):
            for chunk, store, sink in ((chunk_out, out, sys.stdout), (chunk_err, errs, sys.stderr)):
                if chunk:
                    store.append(chunk)
                    if stream:
                        sink.buffer.write(chunk)
                        sink.flush()
        code = api.exec_inspect(exec_id)["ExitCode"]
        return Result(code if code is not None else 1, b"".join(out).decode(errors="replace"),
                      b"".join(errs).decode(errors="replace"))


    def attach(self, command: list[str]) -> int:
        """Runs command on a pseudo-terminal of the machine's own (as `kubectl exec -it` and `docker exec -it`
        give one), wired to this process's terminal in raw mode and kept to its size; returns the exit code."""
        api = self.client.api
        env = {"TERM": os.environ.get("TERM") or "xterm"}
        exec_id = api.exec_create(self.container.id, command, stdin=True, tty=True, environment=env)["Id"]
        conn = api.exec_start(exec_id, tty=True, socket=True)
        sock = getattr(conn, "_sock", conn)
        terminal = Terminal(lambda rows, cols: api.exec_resize(exec_id, height=rows, width=cols))
        with terminal:
            terminal.pump(sock)
        code = api.exec_inspect(exec_id)["ExitCode"]
        return code if code is not None else 1


class Provider:
    """The lab's machines as the engine has them."""

    def __init__(self, client: docker.DockerClient | None = None) -> None:
        self.client = client or rt.connect()

    def get(self, container_name: str) -> Machine | None:
        c = rt.get(self.client, container_name)
        return Machine(self.client, c) if c is not None else None

    def machines(self, lab: str) -> list[Machine]:
        return [Machine(self.client, c) for c in rt.containers(self.client, lab)]
