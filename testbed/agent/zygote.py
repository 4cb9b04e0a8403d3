"""Nodes' agents forked from one warm process per host, so that they share its memory.

A node's agent is a Python process; started on its own in each node, it imports the same modules, and each copy
holds about 20 MiB of its own. The fabric machine (which shares the host's PID namespace) runs this process
instead: it imports the agent's modules once, freezes them out of the garbage collector's reach, and forks each
node's agent from itself. A child shares every page it does not write, and moves into the node's namespaces
(PID, network, UTS, IPC, mount) and cgroups before it runs the agent, so the node sees the same process it saw
before: in its `ps`, its `docker top`, its memory, its logs. A node's own init (`tini -- sleep infinity`) only holds
the container open.

Its agent's death stops the node, as it did when the agent was the container's main process: the control plane sees
the node stop and the next sync replaces it. Which agent serves which node is kept in the fabric container's own
filesystem, so the fabric started again (after a crash) still watches the agents it forked before.

The fabric's agent talks to this process over its standard input and output, a JSON line each way:
{"spawn": [{"name", "pid"}]} (pid: the node's init on this host) -> {"agents": {name: pid}, "errors": {name: why}}."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import json
import os
import selectors
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from testbed.agent import nsutil

WARM = ("__main__", "pods", "netops", "links", "kernel", "libnft", "nftdiff", "iptdiff", "rules", "netstate",
        "nlbatch", "nldump", "nlmsg", "readiness", "heartbeat", "supervisor", "workload", "delayer", "processes",
        "trace", "iproute", "macs", "podhealth", "cni", "cniwire")
NAMESPACES = ("ipc", "uts", "net", "mnt")  # the PID namespace is the fork's; the mount namespace goes last
CLONE_NEWPID = 0x20000000
M_ARENA_MAX = -8
PR_SET_MEMORY_MERGE = 67
# the fabric container's own filesystem, which its restarts keep on any host (a machine's run folder on another
# host's engine is a tmpfs, empty again after a restart)
RECORD = "/var/lib/testbed/agents.json"
NODE_ENDING = 0.5  # seconds
IDLE = 0.2  # seconds without an event before the record is written

def _log(text: str) -> None:
    sys.stderr.write(f"{time.strftime('%H:%M:%S')} zygote: {text}\n")
    sys.stderr.flush()


def cgroup_files(mountinfo: str, cgroups: str, root: str) -> list[str]:
    """The cgroup.procs of each cgroup a process is in (its /proc/PID/cgroup), under the host's mounts (a host
    process's mountinfo) reached through root: the node's container then holds its agent as it held its main
    process (`docker top`, its memory, its end when the container stops)."""
    v1: list[tuple[set[str], str]] = []  # a hierarchy's mount options (its controllers among them), its mount point
    v2 = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if fields[sep + 1] == "cgroup2":
            v2 = v2 or fields[4]
        elif fields[sep + 1] == "cgroup":
            v1.append((set(fields[sep + 3].split(",")), fields[4]))
    out = []
    for line in cgroups.splitlines():
        _, controllers, path = line.split(":", 2)
        wanted = set(controllers.split(","))
        mount = next((where for options, where in v1 if wanted <= options), None) if controllers else v2
        if mount is not None:
            out.append(f"{root}{mount}{path.rstrip('/')}/cgroup.procs")
    return out


def _cgroup_files(pid: int, host: int) -> list[str]:
    with open(f"/proc/{host}/mountinfo") as f, open(f"/proc/{pid}/cgroup") as g:
        return cgroup_files(f.read(), g.read(), f"/proc/{host}/root")


def _child(init: int, fds: dict[str, int], out: int, env: dict[str, str], cgroups: list[str]) -> None:
    """In the forked child, already in the node's PID namespace: the rest of the node's, then the agent."""
    code = 1
    try:
        for path in cgroups:  # while the host's root is still reachable (before the mount namespace)
            try:
                with open(path, "w") as f:
                    f.write("0")  # this process
            except OSError as err:
                _log(f"agent of PID {init}: not moved into {path}: {err}")
        for kind in NAMESPACES:
            nsutil.setns(fds[kind], 0, kind)
        os.chdir("/")
        os.setsid()  # out of the fabric's process group, which its tini signals when the fabric stops
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.closerange(3, 1 << 16)
        # signals stay as Python set them in the zygote: SIGPIPE ignored above all (a write to a client that went
        # away is an error to handle, not the agent's death)
        os.environ.clear()
        os.environ.update(env)
        sys.argv = [sys.executable, "-m", "testbed.agent"]
        import asyncio

        agent = sys.modules["testbed.agent.__main__"]
        asyncio.run(agent.main())
        code = 0
    except BaseException as err:  # whatever it is, it is said: this child never returns
        with contextlib.suppress(Exception):
            _log(f"agent of PID {init} ended: {type(err).__name__}: {err}")
    finally:
        os._exit(code)


@dataclass
class Forked:
    name: str
    init: int  # the node's init, on this host
    agent: int
    init_fd: int
    agent_fd: int
    started: tuple[str, str] = ("", "")  # the init's and the agent's start times: what tells them from later PIDs


class Zygote:
    def __init__(self, record: str = RECORD) -> None:
        self.record = record
        os.makedirs(os.path.dirname(record), exist_ok=True)
        self.sel = selectors.DefaultSelector()
        self.by_init: dict[int, Forked] = {}
        self.by_fd: dict[int, Forked] = {}
        self.unsaved = False
        self.pending: dict[int, float] = {}  # a node's init (pidfd) whose agent ended -> when to stop the node
        self.own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY)
        # the host's mounts, through a process there: its PID 1 may refuse to be looked into
        self.host = nsutil.ancestor_outside("mnt") or 1

    def adopt(self) -> None:
        """The agents a fabric before this one forked, where both they and their nodes still run."""
        try:
            with open(self.record) as f:
                known = json.load(f)
        except (OSError, ValueError):
            return
        for item in known:
            with contextlib.suppress(OSError, KeyError):
                if nsutil.start_time(item["init"]) != item["initStart"]:
                    continue  # that node is gone
                init_fd = os.pidfd_open(item["init"])
                try:
                    alive = nsutil.start_time(item["agent"]) == item["agentStart"]
                except OSError:
                    alive = False
                if not alive:  # it died while no zygote watched: its node stops, as it would have then
                    _log(f"the agent of {item['name']} ended: its node stops")
                    signal.pidfd_send_signal(init_fd, signal.SIGKILL)
                    os.close(init_fd)
                    continue
                self._watch(Forked(item["name"], item["init"], item["agent"], init_fd, os.pidfd_open(item["agent"])))
        self._save()

    def _watch(self, f: Forked) -> None:
        f.started = (nsutil.start_time(f.init), nsutil.start_time(f.agent))
        self.by_init[f.init] = f
        self.by_fd[f.init_fd] = self.by_fd[f.agent_fd] = f
        self.sel.register(f.init_fd, selectors.EVENT_READ)
        self.sel.register(f.agent_fd, selectors.EVENT_READ)

    def _forget(self, f: Forked) -> None:
        for fd in (f.init_fd, f.agent_fd):
            if fd >= 0:
                self.sel.unregister(fd)
                self.by_fd.pop(fd, None)
                os.close(fd)
        self.pending.pop(f.init_fd, None)
        self.by_init.pop(f.init, None)

    def _save(self) -> None:
        self.unsaved = False
        items = [{"name": f.name, "init": f.init, "agent": f.agent, "initStart": f.started[0],
                  "agentStart": f.started[1]} for f in self.by_init.values()]
        tmp = self.record + ".new"
        with open(tmp, "w") as f:
            json.dump(items, f)
        os.replace(tmp, self.record)

    def spawn(self, name: str, init: int) -> int:
        """The node's agent (forked now, unless one this process watches serves it already): its PID here."""
        if (known := self.by_init.get(init)) is not None:
            if known.agent_fd < 0:
                raise OSError(f"the agent of {name} has just ended: its node stops")
            return known.agent
        init_fd = os.pidfd_open(init)
        fds: dict[str, int] = {}
        out = -1
        try:
            fds = {kind: os.open(f"/proc/{init}/ns/{kind}", os.O_RDONLY) for kind in (*NAMESPACES, "pid")}
            with open(f"/proc/{init}/environ", "rb") as f:
                env = dict(e.split("=", 1) for e in f.read().decode().split("\0") if "=" in e)
            out = os.open(f"/proc/{init}/fd/2", os.O_WRONLY)  # the engine's log of the node
            cgroups = _cgroup_files(init, self.host)
            nsutil.setns(fds["pid"], CLONE_NEWPID, "pid")  # for the fork's child alone
            try:
                pid = os.fork()
            except OSError:
                nsutil.setns(self.own_pidns, CLONE_NEWPID, "pid (back)")
                raise
            if pid == 0:
                _child(init, fds, out, env, cgroups)  # never returns
            nsutil.setns(self.own_pidns, CLONE_NEWPID, "pid (back)")
        except BaseException:
            os.close(init_fd)
            raise
        finally:
            for fd in [*fds.values(), out]:
                if fd >= 0:
                    os.close(fd)
        agent_fd = os.pidfd_open(pid)  # its own child, not reaped: there even if it ended already
        try:
            self._watch(Forked(name, init, pid, init_fd, agent_fd))
        except OSError:  # the node ended meanwhile
            for fd in (init_fd, agent_fd):
                os.close(fd)
            raise
        return pid

    def ended(self, fd: int) -> None:
        """An agent or its node ended. The agent is reaped at once: a node's init cannot end while a process of
        its namespace is left. A node that stops kills its agent before its init has quite ended; an agent that
        dies while its node runs stops the node (as when the agent was its main process), unless the node's end
        follows within NODE_ENDING."""
        f = self.by_fd.get(fd)
        if f is None:
            return
        if fd == f.agent_fd:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(f.agent, os.WNOHANG)
            self.sel.unregister(fd)
            self.by_fd.pop(fd, None)
            os.close(fd)
            f.agent_fd = -1
            self.pending[f.init_fd] = time.monotonic() + NODE_ENDING
            return
        self._forget(f)
        self.unsaved = True  # written once the loop is idle: 200 nodes stopping together would write it 200 times

    def overdue(self) -> None:
        now = time.monotonic()
        for init_fd, deadline in list(self.pending.items()):
            if deadline <= now:
                f = self.by_fd[init_fd]
                del self.pending[init_fd]
                _log(f"the agent of {f.name} ended: its node stops")
                with contextlib.suppress(OSError):
                    signal.pidfd_send_signal(f.init_fd, signal.SIGKILL)

    def request(self, line: bytes) -> dict[str, Any]:
        agents: dict[str, int] = {}
        errors: dict[str, str] = {}
        for item in json.loads(line).get("spawn", []):
            try:
                agents[item["name"]] = self.spawn(item["name"], int(item["pid"]))
            except OSError as err:
                errors[item["name"]] = str(err)
        self._save()
        return {"agents": agents, "errors": errors}

    def serve(self) -> None:
        self.sel.register(sys.stdin.buffer.fileno(), selectors.EVENT_READ)
        stdin = sys.stdin.buffer
        while True:
            wait = max(0.0, min(self.pending.values()) - time.monotonic()) if self.pending else None
            if self.unsaved:
                wait = min(wait, IDLE) if wait is not None else IDLE
            events = self.sel.select(wait)
            if not events and self.unsaved:
                self._save()
            for key, _ in events:
                if key.fd != stdin.fileno():
                    self.ended(key.fd)
                    continue
                line = stdin.readline()
                if not line:  # the fabric's agent is gone (or re-executed): the next one starts its own
                    return
                try:
                    reply = self.request(line)
                except (ValueError, KeyError, TypeError) as err:
                    reply = {"agents": {}, "errors": {"*": f"bad request: {err}"}}
                sys.stdout.write(json.dumps(reply) + "\n")
                sys.stdout.flush()
            self.overdue()


def warm() -> None:
    """Every module an agent imports, imported here once, where each child shares it."""
    from testbed.agent.light import bare_pyroute2, no_ssl

    bare_pyroute2()
    no_ssl()
    from testbed.agent.version import started_with

    started_with()  # the children run this code, whatever is on disk when they are forked
    for name in WARM:
        try:
            importlib.import_module(f"testbed.agent.{name}")
        except Exception as err:  # one that fails is imported by an agent that needs it
            _log(f"not warmed: testbed.agent.{name}: {err}")
    # asyncio.to_thread's pool, which each agent imported on its first sync
    import concurrent.futures.thread  # noqa: F401

    from testbed.agent.libnft import LIBRARY

    with contextlib.suppress(OSError):  # its relocations are written once, here, not in every agent's copy
        ctypes.CDLL(LIBRARY)
    nsutil.libc.mallopt(M_ARENA_MAX, 2)  # a thread's own heap of up to 64 MiB is a node's memory, not shared
    # what each child copies of these pages (reference counts, the interpreter's counters) ends up alike in every
    # child: with the kernel's same-page merging on, ksmd folds the copies back into one. Every child inherits
    # the flag; a kernel without it answers EINVAL, and nothing changes
    nsutil.libc.prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0)
    gc.collect()
    gc.freeze()  # the collector would write to every object's header, and so copy every page, in every child


class Handle:
    """The fabric agent's end: the zygote as its child process, started again if it ended."""

    def __init__(self) -> None:
        self.proc: Any = None
        self.lock = threading.Lock()

    def start(self) -> None:
        import subprocess

        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen([sys.executable, "-m", "testbed.agent.zygote"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def spawn(self, machines: list[dict[str, Any]]) -> dict[str, Any]:
        with self.lock:
            self.start()
            self.proc.stdin.write((json.dumps({"spawn": machines}) + "\n").encode())
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
            if not line:
                raise OSError(f"the zygote ended (code {self.proc.wait()})")
            return dict(json.loads(line))


def main() -> None:
    warm()
    z = Zygote()
    z.adopt()
    z.serve()


if __name__ == "__main__":
    main()
