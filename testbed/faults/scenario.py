"""`testbed scenario run FILE`: a scenario's steps in order against a lab (apply a manifest file, inject a fault
and measure it, clear faults, wait, probe, expect), and a report with each step's outcome; it passes when every
expectation holds. The pytest plugin runs the same (testbed_scenario)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from testbed import faults, lab
from testbed.faults import duration, session
from testbed.model.scenario import Connection, Scenario, Step, load
from testbed.observe.probe import probe


def _connect(name: str, c: Connection) -> dict[str, Any]:
    _, plan = lab.current_plan(name)
    return probe(plan, c.from_, c.target, c.protocol, c.timeout)


def _step(name: str, step: Step, base: Path, measured: dict[str, dict[str, Any]],
          faults_by_step: dict[str, str]) -> dict[str, Any]:
    action = step.action
    out: dict[str, Any] = {"step": step.name or action, "action": action, "ok": True}
    if step.apply is not None:
        lab.apply(name, base / step.apply, say=lambda _: None)
        out["detail"] = f"applied {step.apply}"
    elif step.fault is not None:
        f = step.fault
        probe_args = None if f.measure is None else {
            "from": f.measure.from_, "target": f.measure.target, "protocol": f.measure.protocol,
            "period": duration(f.measure.period, "period")}
        result = session.run(name, f.kind, f.args, duration(f.for_) if f.for_ else None, probe_args,
                             duration(f.measure.timeout, "timeout") if f.measure else 60.0)
        faults_by_step[step.name or f.kind] = result["fault"]["id"]
        if "measure" in result:
            measured[step.name or f.kind] = result["measure"]
            m = result["measure"]
            out["detail"] = f"{f.kind}: outage {m['outageSeconds']:.3f} s, recovered in {m['recoverySeconds']:.3f} s"
        else:
            out["detail"] = f"{f.kind} ({result['fault']['id']})"
    elif step.clear is not None:
        cleared = faults.clear(name, None if step.clear == "all" else faults_by_step.get(step.clear, step.clear))
        out["detail"] = f"cleared {len(cleared)} fault(s)"
    elif step.wait is not None:
        threading.Event().wait(duration(step.wait, "wait"))
        out["detail"] = f"waited {step.wait}"
    elif step.probe is not None:
        got = _connect(name, step.probe)
        out["detail"] = f"{step.probe.from_} → {step.probe.target}: {got['result']}"
    elif step.expect is not None:
        e = step.expect
        if e.outage is not None:
            m = measured[e.outage.of]
            bound = duration(e.outage.atMost, "atMost")
            out["ok"] = m["recovered"] and m["outageSeconds"] <= bound
            out["detail"] = f"outage of {e.outage.of}: {m['outageSeconds']:.3f} s (at most {e.outage.atMost})"
        else:
            c = e.reachable or e.unreachable
            assert c is not None
            got = _connect(name, c)
            want = e.reachable is not None
            out["ok"] = (got["result"] == "connected") == want
            out["detail"] = f"{c.from_} → {c.target}: {got['result']} (expected " \
                            f"{'reachable' if want else 'unreachable'})"
    return out


def run(path: str, lab_name: str) -> dict[str, Any]:
    scenario: Scenario = load(path)
    name = scenario.lab or lab_name
    base = Path(path).resolve().parent
    measured: dict[str, dict[str, Any]] = {}
    by_step: dict[str, str] = {}
    steps = []
    start = time.monotonic()
    try:
        for step in scenario.steps:
            begun = time.monotonic()
            got = _step(name, step, base, measured, by_step)
            got["seconds"] = round(time.monotonic() - begun, 3)
            steps.append(got)
    finally:
        if any(f["id"] in by_step.values() for f in faults.listing(name)):
            faults.clear(name)  # a scenario leaves no fault of its own behind
    return {"scenario": scenario.name, "lab": name, "ok": all(s["ok"] for s in steps), "steps": steps,
            "seconds": round(time.monotonic() - start, 3), "measures": measured}
