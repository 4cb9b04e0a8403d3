"""Which Docker engines a lab spans: each host of its topology on its own engine (the local one by default), and,
for `down`, every engine a lab may have left machines on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from testbed import state
from testbed.plan import machines
from testbed.runtime.machines import RELAY, Provider, elsewhere, provider

if TYPE_CHECKING:
    from testbed.plan.cluster import Plan


def providers(plan: Plan, default: Provider | None = None) -> dict[str, Provider]:
    """Each host's engine: the one it names, else the one the docker CLI picks (default)."""
    return {h.name: (default or provider()) if h.engine is None else provider(h.engine)
            for h in machines.hosts(plan.topology)}


def spread(plan: Plan) -> str:
    """Which nodes run where, when the lab spans hosts (for its events): ' on 2 hosts (here: node1; there: ...)'."""
    where: dict[str, list[str]] = {}
    for n in plan.nodes:
        where.setdefault(n.host, []).append(n.name)
    if len(where) < 2:
        return ""
    return f" on {len(where)} hosts (" + "; ".join(f"{h}: {', '.join(names)}" for h, names in where.items()) + ")"


def engines_of(name: str) -> dict[str, Provider]:
    """Every engine the lab may have machines on: its hosts as its state records them, and each remote machine's
    engine as its run folder here records it (so a crash before the state was complete loses none)."""
    out = {"": provider()}
    st = state.load(name) if state.valid(name) else None
    for h in (st.topology.get("hosts") or []) if st else []:
        if h.get("engine"):
            out[h["engine"]] = provider(h["engine"])
    run = state.run_root() / name
    for relay in run.glob(f"*/{RELAY}") if run.is_dir() else []:
        if (where := elsewhere(relay.parent)) is not None:
            out.setdefault(where.engine.host, provider(where.engine))
    return out
