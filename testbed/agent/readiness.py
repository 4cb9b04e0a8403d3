"""Readiness probes, as the kubelet runs them: per container of a pod that declares a readinessProbe, a loop
that waits initialDelaySeconds, then every periodSeconds runs the handler with timeoutSeconds (tcpSocket and
httpGet from the node's netns to the pod's IP, as the kubelet dials; exec inside the pod), and flips the
container's readiness after successThreshold successes or failureThreshold failures. A pod is ready when all
its probed containers are.

What it observes goes to readiness.json in the node's run folder, which the host reads: the lab's controller
turns a change into new endpoints on every node and new DNS records (testbed/controller.py). Pods that declare
no probe never appear there, and stay ready as before."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
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
        import ssl  # only for HTTPS probes: the agent stays small without it

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


class Prober:
    def __init__(self, path: str) -> None:
        self.path = path
        self.tasks: dict[tuple[str, str], tuple[str, asyncio.Task[None]]] = {}  # (pod, container) → (spec, task)
        self.ready: dict[tuple[str, str], bool] = {}
        self.unwired: dict[str, str] = {}  # pod → why its network could not be made (a CNI plugin's error)

    def sync(self, specs: list[dict[str, Any]], unwired: dict[str, str] | None = None) -> None:
        """Probe exactly the containers these pod specs declare probes for; a probe that changed restarts (and
        its container is not ready until it passes again). A pod whose network could not be made is not
        ready, whatever its probes say, as a pod whose sandbox failed never runs."""
        self.unwired = dict(unwired or {})
        want: dict[tuple[str, str], tuple[str, dict[str, Any], dict[str, Any]]] = {}
        for spec in specs:
            key = f"{spec['namespace']}/{spec['name']}"
            for container, probe in (spec.get("probes") or {}).items():
                want[(key, container)] = (json.dumps([probe, spec["ipv4"], spec["netns"]], sort_keys=True), probe,
                                          spec)
        for k in [k for k in self.tasks if k not in want or self.tasks[k][0] != want[k][0]]:
            self.tasks.pop(k)[1].cancel()
            self.ready.pop(k, None)
        for k, (digest, probe, spec) in want.items():
            if k not in self.tasks:
                self.ready[k] = False
                self.tasks[k] = (digest, asyncio.get_running_loop().create_task(self._loop(k, probe, spec)))
        self._write()

    async def _loop(self, k: tuple[str, str], probe: dict[str, Any], spec: dict[str, Any]) -> None:
        await asyncio.sleep(probe["initialDelay"])
        passed = failed = 0
        while True:
            start = time.monotonic()
            ok = await self._once(probe, spec)
            passed, failed = (passed + 1, 0) if ok else (0, failed + 1)
            state = self.ready.get(k, False)
            if not state and passed >= probe["success"]:
                self._set(k, True)
            elif state and failed >= probe["failure"]:
                self._set(k, False)
            await asyncio.sleep(max(0.0, probe["period"] - (time.monotonic() - start)))

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
