"""A packet delayer in userspace, for kernels without netem (`testbed fault delay`): an iptables rule queues what
leaves the node's underlay link to NFQUEUE (nft's `queue` is absent here; iptables-nft's NFQUEUE target works),
and this holds each packet for its delay, then accepts it. Release times never go backwards, so packets keep
their order (within a flow and across). Past MAX_PENDING held packets, a packet is accepted at once and counted
as an overflow (fail-open: an overload never looks like loss); with no listener the rule's --queue-bypass
accepts too. The nfnetlink_queue protocol is spoken directly on a netlink socket (copy mode META: no payload)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import struct
import subprocess
import time
from typing import Any

NETLINK_NETFILTER = 12
SUBSYS_QUEUE = 3
MSG_PACKET, MSG_VERDICT, MSG_CONFIG = 0, 1, 2
CFG_CMD, CFG_PARAMS, CFG_QUEUE_MAXLEN, CFG_FLAGS, CFG_MASK = 1, 2, 3, 5, 6
CMD_BIND = 1
COPY_META = 1
F_FAIL_OPEN = 1
PACKET_HDR, VERDICT_HDR = 1, 2
NF_ACCEPT = 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
QUEUE = 4242
MAX_PENDING = 20000  # held packets; past this they pass undelayed (and are counted)
RULE = ["POSTROUTING", "-o", "eth0", "-j", "NFQUEUE", "--queue-num", str(QUEUE), "--queue-bypass"]


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def _message(kind: int, attrs: bytes, seq: int = 0, flags: int = NLM_F_REQUEST, family: int = 0) -> bytes:
    body = struct.pack("=BBH", family, 0, socket.htons(QUEUE)) + attrs
    return struct.pack("=IHHII", 16 + len(body), (SUBSYS_QUEUE << 8) | kind, flags, seq, 0) + body


def _attrs(data: bytes) -> dict[int, bytes]:
    out, at = {}, 0
    while at + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, at)
        if length < 4:
            break
        out[kind & 0x7FFF] = data[at + 4:at + length]
        at += (length + 3) & ~3
    return out


class Delayer:
    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.delay = self.jitter = 0.0
        self.pending = self.overflow = self.passed = 0
        self.last_release = 0.0

    @property
    def active(self) -> bool:
        return self.sock is not None

    async def set(self, ms: float, jitter_ms: float) -> dict[str, Any]:
        """Delay ms (± jitter_ms) from now on; 0 stops, the rules and the queue gone."""
        self.delay, self.jitter = ms / 1000, jitter_ms / 1000
        if ms <= 0:
            self.stop()
        elif self.sock is None:
            self._open()
            for tool in ("iptables", "ip6tables"):
                subprocess.run([tool, "-t", "mangle", "-A", *RULE], capture_output=True, check=False)
        return self.counters()

    def counters(self) -> dict[str, Any]:
        return {"delaying": self.active, "ms": self.delay * 1000, "jitter": self.jitter * 1000,
                "passed": self.passed, "overflow": self.overflow, "held": self.pending}

    def _open(self) -> None:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.bind((0, 0))
        # one setting a message, each acknowledged: the kernel refuses a message whole, and says why in its ack
        for seq, attrs in enumerate([
                _attr(CFG_CMD, struct.pack("=BBH", CMD_BIND, 0, 0)),
                _attr(CFG_PARAMS, struct.pack("!IB", 0, COPY_META)),
                _attr(CFG_QUEUE_MAXLEN, struct.pack("!I", MAX_PENDING * 2)),
                _attr(CFG_FLAGS, struct.pack("!I", F_FAIL_OPEN)) + _attr(CFG_MASK, struct.pack("!I", F_FAIL_OPEN))],
                start=1):
            sock.send(_message(MSG_CONFIG, attrs, seq, NLM_F_REQUEST | NLM_F_ACK))
            answer = sock.recv(4096)
            code = struct.unpack_from("=i", answer, 16)[0] if len(answer) >= 20 else 0
            if code and seq == 1:
                sock.close()
                raise OSError(-code, f"NFQUEUE {QUEUE}: {os.strerror(-code)}")
        sock.setblocking(False)
        self.sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def stop(self) -> None:
        for tool in ("iptables", "ip6tables"):
            subprocess.run([tool, "-t", "mangle", "-D", *RULE], capture_output=True, check=False)
        if self.sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def _verdict(self, packet_id: int) -> None:
        self.pending = max(0, self.pending - 1)
        if self.sock is None:
            return
        with contextlib.suppress(OSError):
            self.sock.send(_message(MSG_VERDICT, _attr(VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id))))
            self.passed += 1

    def _readable(self) -> None:
        loop = asyncio.get_running_loop()
        while self.sock is not None:
            try:
                data = self.sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                return
            at = 0
            while at + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, at)
                if length < 16:
                    break
                if kind == (SUBSYS_QUEUE << 8) | MSG_PACKET:
                    header = _attrs(data[at + 20:at + length]).get(PACKET_HDR)
                    if header:
                        self._hold(loop, struct.unpack_from("!I", header)[0])
                at += (length + 3) & ~3

    def _hold(self, loop: asyncio.AbstractEventLoop, packet_id: int) -> None:
        self.pending += 1
        if self.pending > MAX_PENDING:
            self.overflow += 1
            self._verdict(packet_id)
            return
        wait = self.delay + (random.uniform(-self.jitter, self.jitter) if self.jitter else 0.0)
        release = max(time.monotonic() + wait, self.last_release)  # never before an earlier packet
        self.last_release = release
        loop.call_at(loop.time() + (release - time.monotonic()), self._verdict, packet_id)
