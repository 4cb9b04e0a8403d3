"""This process's terminal handed to a remote pseudo-terminal (an exec stream): raw mode while it lasts, the
remote side kept to this terminal's size, bytes pumped both ways until the remote side ends."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import sys
import termios
import tty
from collections.abc import Callable
from types import FrameType
from typing import Any

CHUNK = 1 << 16


class Terminal:
    def __init__(self, resize: Callable[[int, int], Any]) -> None:
        self.resize = resize
        self.fd = sys.stdin.fileno()
        self.interactive = os.isatty(self.fd)
        self.saved: list[Any] | None = None
        self.previous: Any = None

    def __enter__(self) -> Terminal:
        if self.interactive:
            self.saved = termios.tcgetattr(self.fd)
            tty.setraw(self.fd)
            self.previous = signal.signal(signal.SIGWINCH, self._resized)
            self._resized()
        return self

    def __exit__(self, *_: object) -> None:
        if self.saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
            signal.signal(signal.SIGWINCH, self.previous)

    def _resized(self, _sig: int | None = None, _frame: FrameType | None = None) -> None:
        size = os.get_terminal_size(self.fd)
        with contextlib.suppress(Exception):  # the exec may have ended in between
            self.resize(size.lines, size.columns)

    def pump(self, sock: socket.socket) -> None:
        """Until the remote side closes: its output to stdout, stdin to it (stdin's end half-closes it)."""
        out = sys.stdout.buffer
        watched: list[Any] = [sock, self.fd]
        while True:
            try:
                ready, _, _ = select.select(watched, [], [])
            except InterruptedError:  # a SIGWINCH
                continue
            if sock in ready:
                data = sock.recv(CHUNK)
                if not data:
                    return
                out.write(data)
                out.flush()
            if self.fd in ready:
                data = os.read(self.fd, CHUNK)
                if data:
                    sock.sendall(data)
                else:
                    watched.remove(self.fd)
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_WR)
