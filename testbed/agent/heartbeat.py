"""The node's heartbeat, pushed to the lab's control plane as a kubelet renews its Lease: every second, and at
once when a pod's readiness changes, one JSON line on /run/testbed/control.sock (the controller listens there
for this node): the time, and the readiness the node's probes observe. When the controller is not there (it
restarts, or the lab has none), the next beat tries again.

It beats from its own thread, as the kubelet renews its lease from its own loop: a long pod sync must not make
a healthy node look dead. A frozen node (a paused container) stops it with everything else."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

SOCKET = "/run/testbed/control.sock"
PERIOD = 1.0


class Heartbeat:
    def __init__(self, node: str, readiness: Callable[[], dict[str, Any]], path: str = SOCKET) -> None:
        self.node, self.readiness, self.path = node, readiness, path
        self.sock: socket.socket | None = None
        self.changed = threading.Event()

    def poke(self) -> None:
        """A readiness change: beat now."""
        self.changed.set()

    def _observed(self) -> dict[str, Any]:
        for _ in range(5):  # the event loop may change the map while it is copied: copy again
            try:
                return dict(self.readiness())
            except RuntimeError:
                continue
        return {}

    def _send(self) -> None:
        line = json.dumps({"node": self.node, "lease": time.time(), "pid": os.getpid(),
                           "readiness": self._observed()}) + "\n"
        for _ in range(2):  # a connection the controller closed (it restarted) is made again once
            if self.sock is None:
                if not os.path.exists(self.path):
                    return
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(PERIOD)
                try:
                    sock.connect(self.path)
                except OSError:
                    sock.close()
                    return
                self.sock = sock
            try:
                self.sock.sendall(line.encode())
                return
            except OSError:
                self.sock.close()
                self.sock = None

    def run(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # the thread must outlive any one beat
                self._send()
            self.changed.wait(PERIOD)
            self.changed.clear()

    def start(self) -> None:
        threading.Thread(target=self.run, name="heartbeat", daemon=True).start()
