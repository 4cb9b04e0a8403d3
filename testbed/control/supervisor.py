"""Keeps the lab's controller running, as a Docker restart policy keeps kind's control plane: the controller is
this process's child, and when it dies (a crash, a `kill -9`) it is started again within a fraction of a
second. It ends with the lab (`down` stops it, with the controller), or when asked to (SIGTERM).

Run as `python -m testbed.control.supervisor LAB`, started by `up` and `apply` (runtime/readiness.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

from testbed import state

RESTART_AFTER = 0.2  # seconds between a death and the next start; more when it keeps dying at once


def main(name: str) -> None:
    stopping = threading.Event()
    child: subprocess.Popen[bytes] | None = None

    def stop(*_: object) -> None:
        stopping.set()
        if child is not None and child.poll() is None:
            child.terminate()

    signal.signal(signal.SIGTERM, stop)
    backoff = RESTART_AFTER
    while not stopping.is_set() and state.load(name) is not None:
        started = time.monotonic()
        child = subprocess.Popen([sys.executable, "-m", "testbed.control.controller", name])
        code = child.wait()
        if stopping.is_set() or state.load(name) is None:
            break
        print(f"{time.strftime('%H:%M:%S')} controller exited ({code}); starting it again", flush=True)
        backoff = RESTART_AFTER if time.monotonic() - started > 10 else min(backoff * 2, 5.0)
        stopping.wait(backoff)


if __name__ == "__main__":
    main(state.check_name(sys.argv[1]))
