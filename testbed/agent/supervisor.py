"""Daemons the agent runs in its node (BIRD, the DNS server, later ingress): started, restarted with back-off
when they exit, reloaded or restarted when their config changes, stopped when no longer wanted. tini, PID 1
of the container, reaps whatever they leave behind.

The host sends the full desired list; sync() makes the node match it, like sync_pods. A pod's process follows
its restartPolicy: Always restarts it, OnFailure only after a failure, Never leaves it completed or failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

from testbed.agent import nsutil

BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0
STOP_GRACE = 2.0
HEALTHY_AFTER = 10.0  # a run this long resets the back-off


@retry(retry=retry_if_result(lambda gone: not gone), stop=stop_after_delay(STOP_GRACE), wait=wait_fixed(0.01),
       retry_error_callback=lambda _: False)
def _gone(pid: int) -> bool:
    """Whether a killed process is gone: reaped here when it is still this agent's child (the agent
    re-executed itself), else no longer in /proc (tini reaps it when the agent crashed)."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return not os.path.exists(f"/proc/{pid}")


@dataclass
class Proc:
    name: str
    argv: list[str]
    files: dict[str, str]
    reload: list[str] | None
    digest: str
    group: str = "daemons"
    restart: str = "Always"
    finished: bool = False  # exited for good, as its restart policy says
    process: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    restarts: int = 0
    last_exit: int | None = None
    started: float = 0.0


def write_files(files: dict[str, str], prune: list[str] | tuple[str, ...] = ()) -> bool:
    """Writes what differs, readable by root only (a proxy's private keys are among them), in folders only root
    may enter; removes the files of the prune folders that are not given. True when anything changed."""
    changed = False
    for path, text in files.items():
        try:
            with open(path) as f:
                if f.read() == text:
                    continue
        except FileNotFoundError:
            pass
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
        changed = True
    for folder in prune:
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(folder):
                path = os.path.join(folder, name)
                if path not in files and os.path.isfile(path):
                    os.unlink(path)
                    changed = True
    return changed


class Supervisor:
    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self.procs: dict[str, Proc] = {}

    def log_path(self, name: str) -> str:
        return os.path.join(self.log_dir, f"{name}.log")

    async def sync(self, desired: list[dict[str, Any]], group: str = "daemons",
                   started: list[str] | None = None) -> dict[str, int]:
        """Makes the processes of one group (the machine's daemons, or its pods' processes) exactly desired; the
        names of those it starts go to started."""
        added = removed = changed = 0
        want = {d["name"]: d for d in desired}
        for name in sorted(n for n, p in self.procs.items() if p.group == group and n not in want):
            await self._stop(self.procs.pop(name))
            removed += 1
        for name, d in want.items():
            digest = hashlib.sha1(json.dumps([d["argv"], d.get("reload"), d.get("restart")]).encode()).hexdigest()
            files_changed = write_files(d.get("files", {}))
            proc = self.procs.get(name)
            if proc is not None and proc.digest == digest and proc.task and (proc.finished or not proc.task.done()):
                if files_changed:
                    changed += 1
                    if not (proc.reload and await self._reload(proc)):
                        await self._stop(proc)
                        self._start(name, d, digest, group, started)
                continue
            if proc is not None:
                await self._stop(proc)
                changed += 1
            else:
                added += 1
            self._start(name, d, digest, group, started)
        return {"added": added, "removed": removed, "changed": changed}

    def _pid_path(self, name: str) -> str:
        return os.path.join(self.log_dir, f"{name}.pid")

    @staticmethod
    def _identity(pid: int) -> str:
        """pid and start time: a pid the kernel has given to another process since does not match."""
        return f"{pid} {nsutil.start_time(pid)}"

    def _reap_stale(self, name: str) -> None:
        """A process an earlier agent of this machine started under this name (it crashed, or re-executed with
        new code) is killed, with its group, before a new one starts: two servers on one port would share its
        traffic, and a stopped one would swallow half of it."""
        try:
            with open(self._pid_path(name)) as f:
                recorded = f.read().strip()
            pid = int(recorded.split()[0])
            alive = self._identity(pid) == recorded
        except (OSError, ValueError, IndexError):
            return
        if alive and not any(p.process and p.process.pid == pid for p in self.procs.values()):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            _gone(pid)  # its port is free once it is gone

    def _start(self, name: str, d: dict[str, Any], digest: str, group: str, started: list[str] | None) -> None:
        self._reap_stale(name)
        if started is not None:
            started.append(name)
        proc = Proc(name, d["argv"], d.get("files", {}), d.get("reload"), digest, group, d.get("restart", "Always"))
        proc.task = asyncio.get_running_loop().create_task(self._run(proc))
        self.procs[name] = proc

    async def _run(self, proc: Proc) -> None:
        backoff = BACKOFF_FIRST
        while not proc.stopping.is_set():
            os.makedirs(self.log_dir, exist_ok=True)
            with open(self.log_path(proc.name), "ab") as log:
                try:
                    proc.process = await asyncio.create_subprocess_exec(
                        *proc.argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                        start_new_session=True)
                except OSError as err:  # not found, not executable: counts as a crash
                    log.write(f"testbed: cannot start {proc.argv[0]}: {err.strerror}\n".encode())
                    proc.process = None
            proc.started = time.monotonic()
            if proc.process:
                with contextlib.suppress(OSError), open(self._pid_path(proc.name), "w") as f:
                    f.write(self._identity(proc.process.pid))
            proc.last_exit = await proc.process.wait() if proc.process else 127
            if proc.stopping.is_set():
                return
            if proc.restart == "Never" or (proc.restart == "OnFailure" and proc.last_exit == 0):
                proc.finished = True
                return
            proc.restarts += 1
            backoff = BACKOFF_FIRST if time.monotonic() - proc.started > HEALTHY_AFTER else min(backoff * 2,
                                                                                                BACKOFF_MAX)
            with contextlib.suppress(asyncio.TimeoutError):  # wait out the back-off, or a stop
                await asyncio.wait_for(proc.stopping.wait(), backoff)

    async def _reload(self, proc: Proc) -> bool:
        assert proc.reload is not None
        try:
            child = await asyncio.create_subprocess_exec(*proc.reload, stdout=asyncio.subprocess.DEVNULL,
                                                         stderr=asyncio.subprocess.DEVNULL)
            return await asyncio.wait_for(child.wait(), 10) == 0
        except (TimeoutError, OSError):
            return False

    async def _stop(self, proc: Proc) -> None:
        proc.stopping.set()
        p = proc.process
        if p is not None and p.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(p.wait(), STOP_GRACE)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                await p.wait()
        if proc.task:
            await proc.task
        with contextlib.suppress(OSError):
            os.unlink(self._pid_path(proc.name))

    def kill(self, name: str) -> bool:
        """SIGKILL to a process's group (a stopped process dies too): its loop counts a restart and starts it
        again, after the back-off."""
        proc = self.procs.get(name)
        if proc is None or proc.process is None or proc.process.returncode is not None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.process.pid, signal.SIGKILL)
        return True

    def status(self) -> list[dict[str, Any]]:
        out = []
        for name, proc in sorted(self.procs.items()):
            alive = proc.process is not None and proc.process.returncode is None
            state = ("completed" if proc.last_exit == 0 else "failed") if proc.finished else \
                "running" if alive else "restarting"
            out.append({"name": name, "group": proc.group, "state": state,
                        "restarts": proc.restarts, "pid": proc.process.pid if alive and proc.process else None,
                        "lastExit": proc.last_exit})
        return out
