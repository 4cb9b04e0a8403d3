"""Lab lifecycle: up, down, apply, delete. Each loads desired state, plans it (pure, so bad input fails before
anything is made), then runs the action pipeline that makes the machine match."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from ipaddress import IPv4Network
from pathlib import Path

from testbed import kube, loader, state
from testbed.actions import Action, Context, run_all
from testbed.errors import InvalidInput, NotFound, Problem
from testbed.loader import Doc, Manifest
from testbed.network import overlay
from testbed.network.bridge import Bridge
from testbed.network.pods import Pods
from testbed.network.underlay import Underlay
from testbed.network.underlay import lab_names as underlay_labs
from testbed.network.underlay import remove as remove_underlay
from testbed.plan import cluster, ipam
from testbed.plan.cluster import Plan
from testbed.runtime import docker as rt
from testbed.runtime.nodes import Nodes
from testbed.topology import Topology

Say = Callable[[str], object]
ALLOCATION_LOCK = "_allocations"  # not a DNS label, so never a lab's name


def pipeline(topo: Topology) -> list[Action]:
    return [Nodes(), Underlay(), Bridge(), overlay(topo.networking.network), Pods()]


def _stored(st: state.LabState) -> list[Manifest]:
    out = []
    for entry in st.manifests:
        doc = Doc(entry["data"], entry["file"])
        result = loader.parse_manifest(doc)
        if isinstance(result, list):
            raise InvalidInput(result)
        out.append(result)
    return out


def _record(manifests: list[Manifest]) -> list[dict[str, object]]:
    """What the state keeps of manifests; _stored reads it back."""
    return [{"file": m.doc.file, "data": m.doc.data} for m in manifests]


def _merge(old: list[Manifest], new: list[Manifest]) -> list[Manifest]:
    keys = {m.key for m in new}
    return [m for m in old if m.key not in keys] + new


def _underlay(topo: Topology, st: state.LabState | None) -> IPv4Network:
    others = [s.underlay for n in state.names() if n != topo.name and (s := state.load(n)) and s.underlay]
    wanted = topo.networking.underlayCIDR
    if wanted is not None:
        for o in others:
            if wanted.overlaps(IPv4Network(o)):
                raise InvalidInput([Problem("", "networking.underlayCIDR",
                                            f"{wanted} overlaps another lab's underlay {o}")])
        return wanted
    if st and st.underlay:
        return IPv4Network(st.underlay)
    return ipam.free_underlay(others)


def _converge(plan: Plan, st: state.LabState, say: Say, progress: Say | None) -> Context:
    client = rt.connect()
    st.phase = "creating"
    st.save()  # before anything exists, so `down` after a crash finds the lab by its state too
    planned = {n.name for n in plan.nodes}
    for c in rt.containers(client, plan.lab):
        if c.labels.get(rt.NODE) not in planned:  # nodes the topology no longer has
            c.remove(force=True)
    ctx = Context(plan, client, say)
    run_all(ctx, pipeline(plan.topology), progress)
    st.allocations = plan.allocations()
    st.phase = "ready"
    st.save()
    return ctx


def up(path: str | Path, say: Say = print, progress: Say | None = None) -> Context:
    topo, manifests = loader.load_topology(path)
    with state.locked(topo.name):
        st = state.load(topo.name)
        if st:  # manifests applied since the last `up` stay; the topology's own ones are refreshed
            manifests = _merge(_stored(st), manifests)
        # one lab at a time picks its underlay and records it, so labs brought up together never share one
        with state.locked(ALLOCATION_LOCK):
            underlay = _underlay(topo, st)
            plan = cluster.build(topo, manifests, underlay, st.allocations if st else None)
            st = state.LabState(topo.name, str(Path(path).resolve()),
                                topo.model_dump(mode="json", exclude={"manifests"}),
                                _record(manifests),
                                st.allocations if st else {}, str(underlay))
            st.save()
        return _converge(plan, st, say, progress)


def _require(name: str) -> state.LabState:
    st = state.load(name)
    if st is None:
        raise NotFound(f"no lab named {name!r} (labs: {', '.join(state.names()) or 'none'})")
    return st


def _plan(st: state.LabState, manifests: list[Manifest]) -> Plan:
    topo = Topology.model_validate(st.topology)
    return cluster.build(topo, manifests, IPv4Network(st.underlay), st.allocations)


def current_plan(name: str) -> tuple[state.LabState, Plan]:
    st = _require(name)
    return st, _plan(st, _stored(st))


def _change(st: state.LabState, manifests: list[Manifest], say: Say, progress: Say | None) -> Context:
    plan = _plan(st, manifests)
    st.manifests = _record(manifests)
    return _converge(plan, st, say, progress)


def apply(name: str, path: str | Path, say: Say = print, progress: Say | None = None) -> Context:
    new = loader.load_manifest_file(path)
    with state.locked(name):
        st = _require(name)
        return _change(st, _merge(_stored(st), new), say, progress)


def delete(name: str, path: str | Path, say: Say = print, progress: Say | None = None) -> list[str]:
    """Removes the file's objects (a Namespace takes its objects with it); returns keys that were not there."""
    gone = loader.load_manifest_file(path)
    with state.locked(name):
        st = _require(name)
        old = _stored(st)
        keys = {m.key for m in gone}
        namespaces = {m.obj.metadata.name for m in gone if isinstance(m.obj, kube.Namespace)}
        missing = sorted(keys - {m.key for m in old})
        keep = [m for m in old if m.key not in keys
                and (isinstance(m.obj, kube.Namespace) or (m.obj.metadata.namespace or "default") not in namespaces)]
        _change(st, keep, say, progress)
    return missing


def known_labs() -> set[str]:
    names = set(state.names()) | underlay_labs()
    if state.run_root().is_dir():
        names |= {p.name for p in state.run_root().iterdir() if p.is_dir()}
    with contextlib.suppress(Exception):
        names |= rt.lab_names(rt.connect())
    return names


def down(name: str, say: Say = print) -> bool:
    """Removes everything the lab made; safe to repeat and safe after a crash halfway through `up`."""
    client = rt.connect()
    with state.locked(name):
        found = rt.remove_lab(client, name) > 0
        found |= remove_underlay(name)
        run = state.run_root() / name
        if run.exists():
            shutil.rmtree(run, ignore_errors=True)
            found = True
        found |= state.load(name) is not None
        state.remove(name)
    return found
