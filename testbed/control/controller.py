"""The lab's controller: what the endpoints controller and kube-proxy do together in a cluster when a pod's
readiness changes. It compares, five times a second, what the nodes' agents observe of probed pods
(readiness.json) with the readiness the lab's last sync used (its state), and on a difference re-syncs the
installers (kube-proxy rules on every node, DNS records, policy) under the lab's lock. It ends by itself when
the lab is gone.

Run as `python -m testbed.control.controller LAB`, started by `up` and `apply` (testbed/readiness.py)."""

from __future__ import annotations

import signal
import sys
import threading
import time

from testbed import events, lab, state
from testbed.runtime import readiness

PERIOD = 0.2


def main(name: str) -> None:
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    while not stopping.is_set() and (st := state.load(name)) is not None:
        seen = readiness.observed(name)
        changed = sorted(k for k, ready in st.readiness.items() if seen.get(k, False) != ready)
        if changed and st.phase == "ready":
            start = time.monotonic()
            for key in changed:
                now = "ready" if seen.get(key, False) else "not ready"
                events.emit(name, "Readiness", f"pod/{key}", f"{key} is {now}, as its node's agent observed",
                            kind="Normal" if seen.get(key, False) else "Warning", ready=seen.get(key, False))
            try:
                lab.refresh(name)
                took = time.monotonic() - start
                print(f"{time.strftime('%H:%M:%S')} readiness of {', '.join(changed)}: synced in {took:.2f}s",
                      flush=True)
                events.emit(name, "Synced", "controller", f"endpoints, DNS and policies follow {len(changed)} "
                                                          f"readiness change(s), in {took:.2f}s",
                            duration=round(took, 4), pods=changed)
            except Exception as err:  # the lab may be changing under us (down, up): try again next round
                print(f"{time.strftime('%H:%M:%S')} sync failed: {type(err).__name__}: {err}", flush=True)
                events.emit(name, "Failed", "controller", f"sync after a readiness change: {type(err).__name__}: "
                                                          f"{err}", kind="Warning")
                stopping.wait(1.0)
        stopping.wait(PERIOD)


if __name__ == "__main__":
    main(state.check_name(sys.argv[1]))
