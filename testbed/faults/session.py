"""One fault as the command line runs it: with --measure, a probe loop starts first (a second of baseline),
then the fault; with --for, it is cleared after its time; the loop runs on until the client has been answered
for SETTLE seconds in a row (longer in bgp mode: settled_after; at most --timeout), and its outages are reported."""

from __future__ import annotations

import threading
import time
from typing import Any

from testbed import faults, lab
from testbed.faults import measure

SETTLE = 2.0
BASELINE = 1.0


def run(name: str, kind: str, args: dict[str, Any], lasts: float | None = None,
        probe: dict[str, Any] | None = None, timeout: float = 60.0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    loop, settle = None, SETTLE
    if probe is not None:
        _, plan = lab.current_plan(name)
        settle = settled_after(plan)
        loop = measure.Probe(plan, probe["from"], probe["target"], probe.get("protocol", "tcp"),
                             probe.get("period", 0.01), f"{int(time.time() * 1000)}")
        loop.start()
        threading.Event().wait(BASELINE)
    fault = faults.inject(name, kind, args)
    out["fault"] = fault.as_json()
    cleared = None
    if lasts:
        if loop is None:  # the lab's controller clears it when its time is up
            _expire_at(name, fault.id, fault.since + lasts)
        else:
            threading.Event().wait(max(0.0, fault.since + lasts - time.time()))
            faults.clear(name, fault.id)
            cleared = time.time()
    if loop is not None:
        recovered = loop.wait_recovered(cleared or fault.since, settle, timeout)
        out["measure"] = measure.report(loop.stop(), fault.since, cleared)
        out["measure"]["recovered"] = recovered
    return out


def settled_after(plan: Any) -> float:
    """How long the client must be answered in a row to call it recovered. With BGP, a peer may notice a
    restarted router (or node) only when its hold timer runs out: an outage can begin that long after the fault,
    and a client answered until then has not recovered from it yet."""
    net = plan.topology.networking
    return max(SETTLE, net.bgp.holdTime + 1.0) if net.network == "bgp" else SETTLE


def _expire_at(name: str, fid: str, until: float) -> None:
    from testbed import state

    with state.locked(name):
        st = state.load(name)
        if st is not None:
            for record in st.faults:
                if record["id"] == fid:
                    record["until"] = until
            st.save()
