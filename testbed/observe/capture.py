"""`testbed capture`: tcpdump inside a pod, a machine, or the lab's fabric (the underlay bridge), for a count of
packets or a time, written as a pcap file (or streamed to stdout for `tshark -r -` or Wireshark), or printed as
tcpdump's one-line summaries. It runs in the target's own namespace, so a pod's capture shows what its eth0
carries; the fabric's shows what crosses between the machines, VXLAN-encapsulated in vxlan mode."""

from __future__ import annotations

import sys
from typing import BinaryIO

from testbed.errors import EnvironmentProblem, InvalidInput, NotFound, Problem
from testbed.network import underlay
from testbed.plan.cluster import Plan
from testbed.runtime import podexec

FABRIC = "fabric"


def command(interface: str, bpf: str, count: int | None, duration: float, pcap: bool) -> list[str]:
    """tcpdump, stopped by itself: at count packets, or by SIGINT after duration (so it still writes its
    summary and flushes its file)."""
    argv = ["timeout", "-s", "INT", f"{duration:g}", "tcpdump", "-i", interface, "-n", "-s", "0"]
    argv += (["-U", "-w", "-"] if pcap else ["-l"]) + (["-c", str(count)] if count else [])
    return [*argv, *([bpf] if bpf else [])]


def _interfaces(plan: Plan, target: str) -> list[str]:
    """What interfaces the target has, for an error that lists them."""
    if target == FABRIC:
        return [underlay.BRIDGE, *[underlay.fabric_if(m.name) for m in plan.machines() if m.name != FABRIC]]
    _, pod = podexec.resolve(plan, target)
    return ["eth0", "lo"] if pod else ["any", "eth0", "lo", "cni0", "vxlan0", "veth..."]


def _failed(code: int, stderr: str, plan: Plan, target: str, interface: str, bpf: str) -> None:
    """tcpdump's own refusals, as testbed's errors: a filter it cannot compile (exit 2), an interface that
    does not exist (exit 3)."""
    text = " ".join(line for line in stderr.splitlines() if not line.startswith(("tcpdump: verbose", "listening")))
    if "syntax error" in text or ("filter" in text and code == 1):
        raise InvalidInput([Problem("testbed capture", "--filter", f"tcpdump refuses {bpf!r}: {text.strip()}")])
    if "No such device" in text or "doesn't exist" in text or "no suitable device" in text:
        raise NotFound(f"{target} has no interface {interface!r} (interfaces: {', '.join(_interfaces(plan, target))})")
    if code not in (0, 124) and text:  # 124: stopped by its time limit, as asked
        raise EnvironmentProblem(f"tcpdump in {target} failed ({code}): {text.strip()[-300:]}")


def capture(plan: Plan, target: str, interface: str | None, bpf: str, count: int | None, duration: float,
            sink: BinaryIO | None) -> int:
    """Runs the capture; sink gets the pcap (None: summaries to stdout). Returns tcpdump's exit code."""
    pcap = sink is not None
    container, pod = podexec.resolve(plan, target)
    # the fabric machine holds the segment bridges: its capture shows what crosses between the machines
    interface = interface or (underlay.BRIDGE if target == FABRIC else "eth0" if pod else "any")
    said = _Tee(sys.stderr.buffer)
    result = podexec.running(container, pod).exec(podexec.wrap(pod, command(interface, bpf, count, duration, pcap)),
                                                  out=sink or sys.stdout.buffer, err=said)  # type: ignore[arg-type]
    _failed(result.exit_code, said.text(), plan, target, interface, bpf)
    return result.exit_code


class _Tee:
    """tcpdump's stderr, shown as it comes and kept, to turn its refusals into testbed's errors."""

    def __init__(self, sink: BinaryIO) -> None:
        self.sink, self.kept = sink, bytearray()

    def write(self, chunk: bytes) -> None:
        self.sink.write(chunk)
        self.kept += chunk

    def flush(self) -> None:
        self.sink.flush()

    def text(self) -> str:
        return self.kept.decode(errors="replace")
