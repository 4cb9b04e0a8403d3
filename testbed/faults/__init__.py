"""`testbed fault`: things that break a lab on purpose, each a registered kind (machines.py: machines and pods;
links.py: the underlay's links) that checks its arguments against the lab, does it, and can undo it. A fault is
recorded in the lab's state until it is cleared (`testbed fault clear`, or its `--for` runs out: the lab's
controller clears it), so `fault list` shows what is broken and `down` during a fault leaves nothing."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from testbed import events, lab, state
from testbed.errors import InvalidInput, NotFound, Problem
from testbed.plan.cluster import Plan
from testbed.plugins import Registry


@dataclass
class Fault:
    id: str
    kind: str
    args: dict[str, Any]
    since: float
    until: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)  # what undoing needs, and counters (delay's overflow)

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "args": self.args, "since": self.since, "until": self.until,
                "notes": self.notes}


class Kind:
    name: ClassVar[str]
    undoable: ClassVar[bool] = True
    starts_node: ClassVar[bool] = False  # it starts its node: the faults that held that node down are over
    summary: ClassVar[str] = ""

    def check(self, plan: Plan, args: dict[str, Any]) -> None:
        """Raises InvalidInput (a bad value) or NotFound (an unknown node or pod) before anything is done."""

    def apply(self, plan: Plan, fault: Fault) -> None:
        raise NotImplementedError

    def undo(self, plan: Plan, fault: Fault) -> None:
        pass


_REGISTRY: Registry[Kind] = Registry(__name__)
register = _REGISTRY.register


def kinds() -> dict[str, type[Kind]]:
    return _REGISTRY.all()


def bad(field: str, reason: str) -> InvalidInput:
    return InvalidInput([Problem("testbed fault", field, reason)])


def node(plan: Plan, name: str) -> str:
    if name not in {n.name for n in plan.nodes}:
        raise NotFound(f"no node {name!r} in lab {plan.lab} (nodes: {', '.join(n.name for n in plan.nodes)})")
    return name


def duration(text: str, what: str = "--for") -> float:
    """'30s', '500ms', '2m', or seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", text.strip())
    if not match:
        raise bad(what, f"{text!r} is not a duration (500ms, 30s, 2m)")
    value = float(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[match.group(2)]
    if value <= 0:
        raise bad(what, f"{text!r} must be more than zero")
    return value


def inject(name: str, kind: str, args: dict[str, Any], lasts: float | None = None) -> Fault:
    """Checks the fault against the lab, does it, and records it (nothing is done when a check fails)."""
    if kind not in kinds():
        raise NotFound(f"no fault kind {kind!r} (kinds: {', '.join(sorted(kinds()))})")
    impl = kinds()[kind]()
    with state.locked(name):
        st, plan = lab.current_plan(name)
        impl.check(plan, args)
        now = time.time()
        fault = Fault(secrets.token_hex(3), kind, args, now, now + lasts if lasts else None)
        impl.apply(plan, fault)
        st = state.load(name) or st
        ended = [f for f in st.faults if impl.starts_node and state.holds_down(f) == args["node"]]
        st.faults = [f for f in st.faults if f not in ended] + ([fault.as_json()] if impl.undoable else [])
        if ended or impl.undoable:
            st.save()
    for record in ended:
        events.emit(name, "FaultCleared", f"lab/{name}", f"fault {record['id']} ({record['kind']}) over: {kind} "
                                                         f"started {args['node']}", fault=record["id"])
    events.emit(name, "Fault", f"lab/{name}", f"fault {fault.id}: {kind} {_words(args)}" +
                (f" for {lasts:g}s" if lasts else ""), kind="Warning", fault=fault.as_json())
    return fault


def _words(args: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in args.items())


def listing(name: str) -> list[dict[str, Any]]:
    st = state.load(name)
    if st is None:
        raise NotFound(f"no lab named {name!r}")
    return list(st.faults)


def clear(name: str, fid: str | None = None, expired_only: bool = False) -> list[dict[str, Any]]:
    """Undoes the fault fid (every fault, without one; only those past their time, with expired_only)."""
    with state.locked(name):
        st, plan = lab.current_plan(name)
        now = time.time()
        chosen = [f for f in st.faults if (fid is None or f["id"] == fid)
                  and (not expired_only or (f["until"] is not None and f["until"] <= now))]
        if fid is not None and not chosen:
            raise NotFound(f"no fault {fid!r} in lab {name} (faults: "
                           f"{', '.join(f['id'] + ' ' + f['kind'] for f in st.faults) or 'none'})")
        for record in chosen:
            kinds()[record["kind"]]().undo(plan, Fault(**record))
        st = state.load(name) or st
        st.faults = [f for f in st.faults if f not in chosen]
        st.save()
    for record in chosen:
        events.emit(name, "FaultCleared", f"lab/{name}", f"fault {record['id']} ({record['kind']}) undone",
                    fault=record["id"])
    return chosen


def update_notes(name: str, fid: str, change: Callable[[dict[str, Any]], None]) -> None:
    with state.locked(name):
        st = state.load(name)
        if st is None:
            return
        for record in st.faults:
            if record["id"] == fid:
                change(record["notes"])
        st.save()
