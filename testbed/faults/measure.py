"""Outages as a client sees them (`testbed fault ... --measure FROM TARGET`): a probe loop runs inside the source
pod across the fault and its recovery (TCP connections, UDP exchanges, or DNS lookups, one a period), its
samples are cut into outage windows (each failed run: start, end, length, failed probes), and the time to full
recovery is the end of the last window after the fault began. `timeline_png` draws the samples as a small PNG."""

from __future__ import annotations

import struct
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

from testbed import state
from testbed.plan.cluster import Plan
from testbed.runtime import podexec

LOOP = r"""
import os, socket, sys, time
host, port, proto, period, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5]
timeout = max(2 * period, 0.1)
def once():
    try:
        if proto == "dns":
            socket.getaddrinfo(host, None, socket.AF_INET)
            return True
        kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind)
        s.settimeout(timeout)
        s.connect((host, port))
        if proto == "udp":
            s.send(b"hostname")
            s.recv(512)
        s.close()
        return True
    except OSError:
        return False
with open(out, "w", buffering=1) as f:
    next_at = time.time()
    while not os.path.exists(out + ".stop"):
        t = time.time()
        f.write(f"{t:.4f} {1 if once() else 0}\n")
        next_at = max(next_at + period, time.time())
        time.sleep(max(0.0, next_at - time.time()))
"""


@dataclass
class Window:
    start: float
    end: float
    length: float
    failed: int


class Probe:
    """The loop in the source pod; samples land in its node's run folder, which the host reads."""

    def __init__(self, plan: Plan, source: str, target: str, protocol: str, period: float, tag: str) -> None:
        from testbed.observe.probe import address

        self.container, self.pod = podexec.resolve(plan, source)
        node = self.pod.node if self.pod else next(m.name for m in plan.machines() if m.container == self.container)
        host, port = (target, 0) if protocol == "dns" else address(plan, target)
        self.args = [host, str(port), protocol, str(period)]
        self.inside = f"/run/testbed/measure-{tag}.txt"
        self.outside = state.run_dir(plan.lab) / node / f"measure-{tag}.txt"

    def start(self) -> None:
        machine = podexec.running(self.container, self.pod)
        command = podexec.wrap(self.pod, ["env", "RES_OPTIONS=timeout:1 attempts:1", "python3", "-c", LOOP,
                                          *self.args, self.inside])
        machine.spawn(command)

    def samples(self) -> list[tuple[float, bool]]:
        try:
            text = self.outside.read_text()
        except OSError:
            return []
        out = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2:
                out.append((float(parts[0]), parts[1] == "1"))
        return out

    def stop(self) -> list[tuple[float, bool]]:
        Path(str(self.outside) + ".stop").write_text("")
        got = self.samples()
        for path in (self.outside, Path(str(self.outside) + ".stop")):
            path.unlink(missing_ok=True)
        return got

    def recovered(self, since: float, settle: float) -> bool:
        """Probes have succeeded for settle seconds, after since."""
        got = [s for s in self.samples() if s[0] >= since]
        if not got or got[-1][0] - since < settle:
            return False
        tail = [ok for t, ok in got if t >= got[-1][0] - settle]
        return bool(tail) and all(tail)

    def wait_recovered(self, since: float, settle: float, timeout: float) -> bool:
        @retry(retry=retry_if_result(lambda ok: not ok), stop=stop_after_delay(timeout), wait=wait_fixed(0.1),
               retry_error_callback=lambda _: False)
        def poll() -> bool:
            return self.recovered(since, settle)

        return poll()


def windows(samples: list[tuple[float, bool]]) -> list[Window]:
    """Runs of failed probes: from the first failure to the next success."""
    out: list[Window] = []
    start, failed = None, 0
    for i, (t, ok) in enumerate(samples):
        if not ok:
            if start is None:
                start, failed = t, 0
            failed += 1
        elif start is not None:
            out.append(Window(start, t, t - start, failed))
            start = None
        if i == len(samples) - 1 and start is not None:
            out.append(Window(start, t, t - start, failed))
    return out


def report(samples: list[tuple[float, bool]], fault_at: float, cleared_at: float | None) -> dict[str, Any]:
    found = windows(samples)
    after = [w for w in found if w.end >= fault_at]
    return {"probes": len(samples), "failed": sum(1 for _, ok in samples if not ok),
            "faultAt": fault_at, "clearedAt": cleared_at,
            "outages": [asdict(w) for w in found],
            "outageSeconds": round(sum(w.length for w in after), 4),
            "recoverySeconds": round(max(0.0, after[-1].end - fault_at), 4) if after else 0.0,
            "samples": [[round(t, 4), ok] for t, ok in samples]}


def timeline_png(result: dict[str, Any], width: int = 800, height: int = 60) -> bytes:
    """A strip of the probes, green for answered and red for failed, a dark mark where the fault began and a
    blue one where it was cleared; no plotting library needed."""
    samples = result["samples"]
    pixels = [[(255, 255, 255)] * width for _ in range(height)]
    if samples:
        t0, t1 = samples[0][0], max(samples[-1][0], samples[0][0] + 1e-6)
        x_of = lambda t: min(width - 1, max(0, int((t - t0) / (t1 - t0) * (width - 1))))  # noqa: E731
        for t, ok in samples:
            x = x_of(t)
            for y in range(10, height - 10):
                pixels[y][x] = (46, 160, 67) if ok else (214, 39, 40)
        for when, color in ((result["faultAt"], (40, 40, 40)), (result.get("clearedAt"), (30, 90, 200))):
            if when is not None:
                for y in range(height):
                    pixels[y][x_of(when)] = color
    raw = b"".join(b"\0" + bytes(c for px in row for c in px) for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack("!I", len(data)) + kind + data + struct.pack("!I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack("!IIBBBBB", width, height, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
