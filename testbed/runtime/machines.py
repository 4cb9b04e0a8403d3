"""The engine boundary, as kind's nodes and providers: a Machine is one container of a lab (a node, the router, an
external host) with `exec()`, `attach()`, `logs()` and `netns_path()`; a Provider finds, starts and removes a
lab's machines and its image. The pipeline's context, exec, probe, status and the pytest plugin go through here,
so the Docker SDK is used only in this package (runtime/docker.py and images.py)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import struct
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from testbed.errors import EnvironmentProblem
from testbed.runtime import docker as rt
from testbed.runtime import engines, images
from testbed.runtime.terminal import Terminal

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container


class Stream:
    """A command's standard input and output in a machine, over one connection to the engine, which frames what
    comes back: 8 bytes (1 stdout or 2 stderr, 3 zero bytes, a big-endian length), then that many bytes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.out, self.err = sock, b"", b""

    def settimeout(self, seconds: float) -> None:
        self.sock.settimeout(seconds)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def ended(self) -> bool:
        """Whether the command has ended (or the engine closed the connection) with nothing more to say: between
        requests nothing is due, so anything to read means the end."""
        try:
            ready, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):  # closed here
            return True
        return bool(ready)

    def _exact(self, n: int) -> bytes:
        got = b""
        while len(got) < n:
            chunk = self.sock.recv(n - len(got))
            if not chunk:
                said = self.err.decode(errors="replace").strip()
                raise EOFError("the command ended" + (f": {said}" if said else ""))
            got += chunk
        return got

    def line(self) -> bytes:
        """The next line of its output."""
        while b"\n" not in self.out:
            kind, size = struct.unpack(">BxxxL", self._exact(8))
            data = self._exact(size)
            if kind == 2:
                self.err = (self.err + data)[-2000:]
            else:
                self.out += data
        line, _, self.out = self.out.partition(b"\n")
        return line + b"\n"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


RELAY = "relay.json"  # in a machine's run folder here, when it runs on another host: where it is


@dataclass(frozen=True)
class Elsewhere:
    """A machine on another host, as its run folder here records it: its engine and its container."""

    engine: engines.Endpoint
    container: str
    id: str = ""  # the container's, so a machine made anew under the same name is told apart


def elsewhere(run_dir: Path) -> Elsewhere | None:
    try:
        where = json.loads((run_dir / RELAY).read_text())
        return Elsewhere(engines.Endpoint(where["engine"], where.get("tls"), RELAY), where["container"],
                         where.get("id", ""))
    except (OSError, ValueError, KeyError, TypeError):
        return None


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

    @property
    def lab(self) -> str | None:
        return self.container.labels.get(rt.LAB)

    @property
    def container_name(self) -> str:
        return str(self.container.name)

    @property
    def image(self) -> list[str]:
        """The tags of the image it runs."""
        return list(self.container.image.tags)

    def remove(self) -> None:
        self.container.remove(force=True)

    def lifecycle(self, action: str) -> None:
        """stop, start, restart, pause or unpause the container (a fault, or its end)."""
        if action == "stop":
            self.container.stop(timeout=0)
        elif action == "restart":
            self.container.restart(timeout=0)
        else:
            getattr(self.container, action)()
        self.container.reload()

    def logs(self, tail: int = -1, follow: bool = False) -> Iterator[bytes]:
        """Its main process's output (the agent's), as the engine keeps it."""
        if follow:
            yield from self.container.logs(stream=True, follow=True, tail=tail if tail >= 0 else "all")
        else:
            yield self.container.logs(tail=tail if tail >= 0 else "all")

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

    def exec(self, command: list[str], stream: bool = False, out: BinaryIO | None = None,
             err: BinaryIO | None = None) -> Result:
        """Runs command in the machine; with stream, its output goes to this process's as it comes (or to the
        files given as out and err, which then keep it: the result holds only what went elsewhere)."""
        api = self.client.api
        exec_id = api.exec_create(self.container.id, command)["Id"]
        kept: dict[int, list[bytes]] = {1: [], 2: []}
        sinks = {1: out or (sys.stdout.buffer if stream else None), 2: err or (sys.stderr.buffer if stream else None)}
        for chunk_out, chunk_err in api.exec_start(exec_id, stream=True, demux=True):
            for fd, chunk in ((1, chunk_out), (2, chunk_err)):
                if not chunk:
                    continue
                sink = sinks[fd]
                if sink is not None:
                    sink.write(chunk)
                    sink.flush()
                if (fd == 1 and out is None) or (fd == 2 and err is None):
                    kept[fd].append(chunk)
        code = api.exec_inspect(exec_id)["ExitCode"]
        return Result(code if code is not None else 1, b"".join(kept[1]).decode(errors="replace"),
                      b"".join(kept[2]).decode(errors="replace"))

    def copy_code(self) -> None:
        """This install's agent code into a machine on another host's engine (one here has it bind-mounted): its
        agent re-executes from it when asked (`reexec`)."""
        self.client.api.put_archive(self.container.id, "/", rt.code_archive())

    def stream(self, command: list[str]) -> Stream:
        """Starts command in the machine with its standard input open, and returns its two ends at once."""
        api = self.client.api
        exec_id = api.exec_create(self.container.id, command, stdin=True)["Id"]
        conn = api.exec_start(exec_id, socket=True)
        return Stream(getattr(conn, "_sock", conn))

    def spawn(self, command: list[str]) -> None:
        """Starts command in the machine and returns at once; it runs on by itself."""
        self.client.api.exec_start(self.client.api.exec_create(self.container.id, command)["Id"], detach=True)

    def attach(self, command: list[str]) -> int:
        """Runs command on a pseudo-terminal of the machine's own (as `kubectl exec -it` and `docker exec -it`
        give one), wired to this process's terminal in raw mode and kept to its size; returns the exit code."""
        api = self.client.api
        env = {"TERM": os.environ.get("TERM") or "xterm"}
        with contextlib.suppress(OSError):  # the size before the command starts (a resize comes after it has)
            size = os.get_terminal_size(sys.stdin.fileno())
            command = ["sh", "-c", 'stty rows "$1" cols "$2" 2>/dev/null; shift 2; exec "$@"', "sh",
                       str(size.lines), str(size.columns), *command]
        exec_id = api.exec_create(self.container.id, command, stdin=True, tty=True, environment=env)["Id"]
        conn = api.exec_start(exec_id, tty=True, socket=True)
        sock = getattr(conn, "_sock", conn)
        terminal = Terminal(lambda rows, cols: api.exec_resize(exec_id, height=rows, width=cols))
        with terminal:
            terminal.pump(sock)
        code = api.exec_inspect(exec_id)["ExitCode"]
        return code if code is not None else 1


class Provider:
    """One engine: the labs' machines and the node image as it has them."""

    def __init__(self, client: docker.DockerClient | None = None, endpoint: str | engines.Endpoint | None = None
                 ) -> None:
        """endpoint: unix://, tcp:// or ssh://, or context:NAME (default: as the docker CLI picks the engine)."""
        self._client = client
        self.endpoint = endpoint if isinstance(endpoint, engines.Endpoint) else engines.resolve(endpoint)

    @property
    def client(self) -> docker.DockerClient:
        """Connected when first asked: an apply that changes only manifests talks to the agents alone."""
        if self._client is None:
            self._client = rt.connect(self.endpoint)
        return self._client

    def events(self, lab: str, since: float | None = None) -> Iterator[tuple[str, str]]:
        """The lab's machines as the engine sees them change, as they come: (machine, start|unpause|die|...); with
        since (a time), from then on, so nothing is missed between a watcher's start and its subscription."""
        filters = {"label": f"{rt.LAB}={lab}", "type": "container"}
        for event in self.client.events(decode=True, filters=filters, since=since):
            attributes = event.get("Actor", {}).get("Attributes", {})
            yield attributes.get(rt.NODE, ""), event.get("status", "")

    def get(self, container_name: str) -> Machine | None:
        c = rt.get(self.client, container_name)
        return Machine(self.client, c) if c is not None else None

    def machines(self, lab: str | None = None) -> list[Machine]:
        """A lab's machines (every lab's, without one)."""
        return [Machine(self.client, c) for c in rt.containers(self.client, lab)]

    def lab_names(self) -> set[str]:
        return rt.lab_names(self.client)

    def remove_lab(self, lab: str) -> int:
        return rt.remove_lab(self.client, lab, self.endpoint.local)

    def start(self, lab: str, machine: str, container_name: str, run_dir: Path, dual_stack: bool,
              role: str) -> Machine:
        """A machine of the lab from the current node image, with its agent starting."""
        local = self.endpoint.local
        c = rt.run_node(self.client, images.reference(), lab, machine, container_name, run_dir, dual_stack, role,
                        local)
        # where this machine's agent is, for every process of this host that asks it (runtime/agent.call): its
        # socket in the run folder here, or, on another host, a relay through that host's engine
        relay = run_dir / RELAY
        if local:
            relay.unlink(missing_ok=True)
        else:
            relay.write_text(json.dumps({"engine": self.endpoint.host, "tls": self.endpoint.tls,
                                         "container": container_name, "id": c.id}))
        return Machine(self.client, c)

    def image_ready(self, say: Callable[[str], None]) -> str:
        """The node image's reference, built first if it is not here."""
        if not images.present(self.client):
            images.build(self.client, say)
        return images.reference()

    def copy_image_to(self, other: Provider, say: Callable[[str], None], ref: str | None = None) -> bool:
        """An image (default: the node image) onto another engine that lacks it, through both APIs; whether it
        was copied."""
        return images.copy(self.client, other.client, say, ref)

    def check_usable(self, remote_ok: bool = False) -> None:
        """That this engine can run a lab's machines: it runs on this machine (unless the topology names its hosts:
        a lab's run folders are on this machine) and has, or can build, the node image."""
        if not self.endpoint.local and not remote_ok:
            raise EnvironmentProblem(f"the Docker engine at {self.endpoint.host} ({self.endpoint.source}) is not "
                                     "on this machine: a lab on other engines names them in the topology's hosts: "
                                     "(unset DOCKER_HOST, or `docker context use default`)")
        images.check_buildable(self.client)


engine_errors = rt.engine_errors
_providers: dict[engines.Endpoint, Provider] = {}


def provider(endpoint: str | engines.Endpoint | None = None) -> Provider:
    """The engine at endpoint (default: as the docker CLI picks it), one Provider per endpoint and process."""
    ep = endpoint if isinstance(endpoint, engines.Endpoint) else engines.resolve(endpoint)
    key = engines.Endpoint(ep.host, ep.tls)  # the same engine, however it was named
    if key not in _providers:
        _providers[key] = Provider(endpoint=ep)
    return _providers[key]
