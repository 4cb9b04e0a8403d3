"""Readiness probes, as the kubelet runs them: per container of a pod that declares a readinessProbe, a loop
that waits initialDelaySeconds, then every periodSeconds runs the handler with timeoutSeconds (tcpSocket and
httpGet from the node's netns to the pod's IP, as the kubelet dials; exec inside the pod), and flips the
container's readiness after successThreshold successes or failureThreshold failures. A pod is ready when all
its probed containers are.

What it observes goes to readiness.json in the node's run folder, which the host reads: the lab's controller
turns a change into new endpoints on every node and new DNS records (testbed/controller.py). Pods that declare
no probe never appear there, and stay ready as before. Liveness and startup probes restart containers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any


async def _tcp(ip: str, port: int, timeout: float) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout)
    except (TimeoutError, OSError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _http(ip: str, port: int, path: str, timeout: float, tls: bool = False) -> bool:
    """200-399 is success, as for the kubelet, which does not verify an HTTPS probe's certificate either."""
    context = None
    if tls:
        from testbed.agent.light import ssl_module  # only for HTTPS probes: the agent stays small without it

        ssl = ssl_module()
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, port, ssl=context), timeout)
        host = f"[{ip}]" if ":" in ip else ip
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/testbed\r\n\r\n".encode())
        line = await asyncio.wait_for(reader.readline(), timeout)
        writer.close()
        parts = line.decode(errors="replace").split()
        return len(parts) >= 2 and parts[1].isdigit() and 200 <= int(parts[1]) < 400
    except (TimeoutError, OSError, ValueError):  # ssl.SSLError is an OSError
        return False


async def _exec(netns: str, hostname: str, command: list[str], timeout: float) -> bool:
    try:
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", netns, "unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', hostname,
            *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
    except OSError:
        return False
    try:
        return await asyncio.wait_for(proc.wait(), timeout) == 0
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return False


Restart = Callable[[dict[str, Any], str], Awaitable[None]]


class Prober:
    """Readiness, liveness and startup probes, per container, as the kubelet runs them: a startup probe holds the
    others back until it passes (and restarts the container when it fails failureThreshold times); a failing
    liveness probe restarts the container (its process, or a netexec pod's sockets) and counts a restart."""

    def __init__(self, path: str, restart: Restart | None = None) -> None:
        self.path, self.restart = path, restart
        # (pod, container, kind) → (spec digest, task)
        self.tasks: dict[tuple[str, str, str], tuple[str, asyncio.Task[None]]] = {}
        self.ready: dict[tuple[str, str], bool] = {}
        self.started: dict[tuple[str, str], asyncio.Event] = {}
        self.unwired: dict[str, str] = {}  # pod → why its network could not be made (a CNI plugin's error)
        self.observed: dict[str, dict[str, Any]] = {}  # pod → its readiness, as last written
        self.on_change: Callable[[], None] | None = None  # told when what is observed changes (the heartbeat)
        self.kicks: dict[str, set[asyncio.Event]] = {}  # pod → one event per probe loop, set to probe now

    def sync(self, specs: list[dict[str, Any]], unwired: dict[str, str] | None = None) -> None:
        """Probe exactly the containers these pod specs declare probes for; a probe that changed restarts (and
        its container is not ready until it passes again). A pod whose network could not be made is not
        ready, whatever its probes say, as a pod whose sandbox failed never runs."""
        self.unwired = dict(unwired or {})
        want: dict[tuple[str, str, str], tuple[str, dict[str, Any], dict[str, Any]]] = {}
        for spec in specs:
            key = f"{spec['namespace']}/{spec['name']}"
            probes = {(c, "readiness"): p for c, p in (spec.get("probes") or {}).items()}
            probes |= {(c, kind): p for c, both in (spec.get("lifecycle") or {}).items() for kind, p in both.items()}
            for (container, kind), probe in probes.items():
                want[(key, container, kind)] = (json.dumps([probe, spec["ipv4"], spec["netns"]], sort_keys=True),
                                                probe, spec)
        for k in [k for k in self.tasks if k not in want or self.tasks[k][0] != want[k][0]]:
            self.tasks.pop(k)[1].cancel()
            if k[2] == "readiness":
                self.ready.pop(k[:2], None)
        containers = {k[:2] for k in want}
        for pc in [pc for pc in self.started if pc not in containers]:
            del self.started[pc]
        for k, (digest, probe, spec) in want.items():
            if k in self.tasks:
                continue
            gate = self.started.setdefault(k[:2], asyncio.Event())
            if (k[0], k[1], "startup") not in want:
                gate.set()
            if k[2] == "readiness":
                self.ready[k[:2]] = False
            loop = {"readiness": self._readiness, "liveness": self._liveness, "startup": self._startup}[k[2]]
            self.tasks[k] = (digest, asyncio.get_running_loop().create_task(loop(k, probe, spec)))
        self._write()

    def restarted(self, containers: list[tuple[str, str]]) -> None:
        """Containers (pod, container) whose process this sync started again: not ready until their readiness
        probe passes anew, as a restarted container is for the kubelet."""
        gone = [pc for pc in containers if self.ready.get(pc)]
        for pc in gone:
            self.ready[pc] = False
        if gone:
            self._write()

    def now(self, pods: list[str]) -> None:
        """Probe these pods at once, then every period again from there."""
        for pod in pods:
            for kick in self.kicks.get(pod, ()):
                kick.set()

    async def _results(self, probe: dict[str, Any], spec: dict[str, Any]) -> AsyncIterator[bool]:
        """The probe's outcomes, one a period, from its initial delay on (sooner when `now` asks)."""
        await asyncio.sleep(probe["initialDelay"])
        kick, pod = asyncio.Event(), f"{spec['namespace']}/{spec['name']}"
        self.kicks.setdefault(pod, set()).add(kick)
        try:
            while True:
                start = time.monotonic()
                kick.clear()
                yield await self._once(probe, spec)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(kick.wait(), max(0.0, probe["period"] - (time.monotonic() - start)))
        finally:
            self.kicks.get(pod, set()).discard(kick)

    async def _readiness(self, k: tuple[str, str, str], probe: dict[str, Any], spec: dict[str, Any]) -> None:
        await self.started[k[:2]].wait()
        passed = failed = 0
        async for ok in self._results(probe, spec):
            passed, failed = (passed + 1, 0) if ok else (0, failed + 1)
            state = self.ready.get(k[:2], False)
            if not state and passed >= probe["success"]:
                self._set(k[:2], True)
            elif state and failed >= probe["failure"]:
                self._set(k[:2], False)

    async def _liveness(self, k: tuple[str, str, str], probe: dict[str, Any], spec: dict[str, Any]) -> None:
        await self.started[k[:2]].wait()
        while True:
            failed = 0
            async for ok in self._results(probe, spec):
                failed = 0 if ok else failed + 1
                if failed >= probe["failure"]:
                    break
            if self.restart is not None:  # the kubelet kills the container; it comes back, and is probed anew
                await self.restart(spec, k[1])

    async def _startup(self, k: tuple[str, str, str], probe: dict[str, Any], spec: dict[str, Any]) -> None:
        failed = 0
        async for ok in self._results(probe, spec):
            if ok:
                self.started[k[:2]].set()
                return
            failed += 1
            if failed >= probe["failure"] and self.restart is not None:
                failed = 0
                await self.restart(spec, k[1])

    @staticmethod
    async def _once(probe: dict[str, Any], spec: dict[str, Any]) -> bool:
        timeout = float(probe["timeout"])
        if probe["kind"] == "tcp":
            return await _tcp(spec["ipv4"], probe["port"], timeout)
        if probe["kind"] == "http":
            return await _http(spec["ipv4"], probe["port"], probe["path"], timeout, probe.get("scheme") == "HTTPS")
        return await _exec(spec["netns"], spec["hostname"], probe["command"], timeout)

    def _set(self, k: tuple[str, str], value: bool) -> None:
        self.ready[k] = value
        self._write()

    def _write(self) -> None:
        pods: dict[str, dict[str, Any]] = {}
        for (pod, container), value in sorted(self.ready.items()):
            entry = pods.setdefault(pod, {"ready": True, "containers": {}})
            entry["containers"][container] = value
            entry["ready"] = entry["ready"] and value
        for pod, why in self.unwired.items():
            pods[pod] = {**pods.get(pod, {"containers": {}}), "ready": False, "reason": why}
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as f:
            json.dump({"pods": pods}, f)
        os.replace(tmp, self.path)
        if pods != self.observed:
            self.observed = pods
            if self.on_change is not None:
                self.on_change()
