"""The plan of a lab's last sync, kept beside its state. The next apply compares its new plan with this one (what
the nodes hold) instead of planning the last sync again: about half a second at 10,000 pods. It is keyed by
what a sync makes it from (the control plane's node conditions aside) and by this testbed's code, so any
difference plans anew. It is a pickle in the lab's state folder, which only root can enter, like the state file
it is made from."""

from __future__ import annotations

import functools
import hashlib
import json
import pickle
from pathlib import Path

import testbed
from testbed import state
from testbed.plan.cluster import Plan

FILE = "plan.pickle"


@functools.cache
def _code() -> bytes:
    """This install's sources, by name, size and time: another version's plan may not mean the same."""
    root = Path(testbed.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.digest()


def key(st: state.LabState) -> str:
    # not the nodes' conditions nor the evictions' generations: the control plane changes them between syncs, and
    # the kept plan is still what the nodes hold. Keyed by them, a node gone NotReady made the re-sync compare
    # with a plan made from its new condition: nothing to send, and its endpoints stayed in every node's rules
    made_from = [st.topology, st.manifests, st.underlay, st.allocations, st.readiness]
    return hashlib.sha256(_code() + json.dumps(made_from, sort_keys=True, separators=(",", ":")).encode()
                          ).hexdigest()


# lab → the key, the plan and the file's stamp this process last read or wrote: the lab's controller, which serves
# every apply, reads the file only when another process wrote it
_held: dict[str, tuple[str, Plan, int | None]] = {}


def save(st: state.LabState, plan: Plan) -> None:
    made = key(st)
    if (kept := _held.get(st.name)) and kept[0] == made and kept[1] is plan and kept[2] == stamp(st.name):
        return  # a sync that changed nothing: the file holds this very plan (at 10,000 pods, 0.2 s not spent)
    state.write_private(state.lab_dir(st.name) / FILE, pickle.dumps((made, plan), pickle.HIGHEST_PROTOCOL))
    _held[st.name] = (made, plan, stamp(st.name))


def stamp(name: str) -> int | None:
    """When the last sync's plan was kept: a sync that lands changes it."""
    try:
        return (state.lab_dir(name) / FILE).stat().st_mtime_ns
    except FileNotFoundError:
        return None


def load(st: state.LabState) -> Plan | None:
    """The last sync's plan, if it was made from this state by this code."""
    made, seen = key(st), stamp(st.name)
    if (kept := _held.get(st.name)) and kept[0] == made and seen is not None and kept[2] == seen:
        return kept[1]
    try:
        stored, plan = pickle.loads((state.lab_dir(st.name) / FILE).read_bytes())
    except Exception:  # missing, cut short, or from classes this code no longer has: plan it again
        return None
    if stored != made or not isinstance(plan, Plan):
        return None
    _held[st.name] = (stored, plan, seen)
    return plan
