"""The lab's controller: what the endpoints controller and kube-proxy do together in a cluster when a pod's
readiness changes. It compares, five times a second, what the nodes' agents observe of probed pods
(readiness.json) with the readiness the lab's last sync used (its state), and on a difference re-syncs the
installers (kube-proxy rules on every node, DNS records, policy) under the lab's lock. It ends by itself when
the lab is gone.

Run as `python -m testbed.controller LAB`, started by `up` and `apply` (testbed/readiness.py)."""

from __future__ import annotations

import signal
import sys
import threading
import time

from testbed import lab, readiness, state

PERIOD = 0.2


def main(name: str) -> None:
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    while not stopping.is_set() and (st := state.load(name)) is not None:
        seen = readiness.observed(name)
        changed = sorted(k for k, ready in st.readiness.items() if seen.get(k, False) != ready)
        if changed and st.phase == "ready":
            start = time.monotonic()
            try:
                lab.refresh(name)
                print(f"{time.strftime('%H:%M:%S')} readiness of {', '.join(changed)}: synced in "
                      f"{time.monotonic() - start:.2f}s", flush=True)
            except Exception as err:  # the lab may be changing under us (down, up): try again next round
                print(f"{time.strftime('%H:%M:%S')} sync failed: {type(err).__name__}: {err}", flush=True)
                stopping.wait(1.0)
        stopping.wait(PERIOD)


if __name__ == "__main__":
    main(state.check_name(sys.argv[1]))
