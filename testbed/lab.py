"""Lab lifecycle: up, down, apply, delete. Each loads desired state, plans it (pure, so bad input fails before
anything is made), then runs the action pipeline that makes the machine match."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from ipaddress import IPv4Network
from pathlib import Path
from typing import TypeVar

from testbed import events, hosts, lastplan, preflight, state
from testbed.actions import Action, Context, run_all
from testbed.errors import EnvironmentProblem, Interrupted, InvalidInput, NotFound, Refused, TestbedError, show
from testbed.installers import Prepare, addons, installers
from testbed.kinds.external import External
from testbed.kinds.node import Nodes, revive
from testbed.kinds.router import Router
from testbed.model import kube, loader
from testbed.model.loader import Doc, Manifest
from testbed.model.topology import Topology
from testbed.network import registry, underlay
from testbed.network.bridge import Bridge
from testbed.network.pods import UNWIRED, Pods
from testbed.network.registry import PodNetwork, Settle
from testbed.network.underlay import Underlay
from testbed.plan import cluster
from testbed.plan.cluster import Plan
from testbed.plan.workloads import expand
from testbed.runtime import readiness
from testbed.runtime.machines import Provider, engine_errors

Say = Callable[[str], object]
T = TypeVar("T")


def pipeline(topo: Topology) -> list[Action]:
    return [Nodes(), Underlay(), External(), Router(), Bridge(), PodNetwork(topo.networking.network), Prepare(),
            Pods(), *installers(), Settle()]


def _steps(plan: Plan, manifests_only: bool) -> list[Action]:
    return [a for a in pipeline(plan.topology) if not (manifests_only and getattr(a, "machines_only", False))]


def _stored(st: state.LabState, origins: tuple[str, ...] = ("topology", "apply")) -> list[Manifest]:
    out = []
    for entry in st.manifests:
        origin = entry.get("origin") or ("topology" if entry["file"] == st.topology_file else "apply")
        if origin not in origins:
            continue
        result = loader.parse_manifest(Doc(entry["data"], entry["file"]))
        if isinstance(result, list):
            raise InvalidInput(result)
        result.origin = origin
        out.append(result)
    return out


def _record(manifests: list[Manifest]) -> list[dict[str, object]]:
    """What the state keeps of manifests; _stored reads it back."""
    return [{"file": m.doc.file, "data": m.doc.data, "origin": m.origin} for m in manifests]


def _merge(old: list[Manifest], new: list[Manifest]) -> list[Manifest]:
    keys = {m.key for m in new}
    return [m for m in old if m.key not in keys] + new


def _converge(plan: Plan, st: state.LabState, provider: Provider, say: Say, progress: Say | None,
              previous: Plan | None = None, verify: bool = False, command: str = "apply") -> Context:
    # an apply or delete of manifests on a finished lab leaves the machines as they are: the controller heals them
    manifests_only = command not in ("up", "heal") and previous is not None and st.phase == "ready"
    st.phase = "creating"
    st.save()  # before anything exists, so `down` after a crash finds the lab by its state too
    start = time.monotonic()
    events.emit(plan.lab, "Started", f"lab/{plan.lab}", f"{command}: {len(plan.nodes)} node(s){hosts.spread(plan)}, "
                                                        f"{len(plan.pods)} pod(s)", command=command)
    try:
        planned = {m.name for m in plan.machines()}
        engines = hosts.providers(plan, provider)
        for engine in [] if manifests_only else {id(e): e for e in engines.values()}.values():
            for m in engine.machines(plan.lab):  # machines the topology no longer has, or has on another host
                if m.name not in planned or engines[plan.machine(m.name).host] is not engine:
                    m.remove()
        whole = plan
        plan = plan if command == "up" else plan.available()  # only `up` starts a node that is down
        ctx = Context(plan, provider, say, previous=previous, verify=verify, incremental=manifests_only)
        # CNI plugins may give other addresses than planned, or none: the lab takes what is (a new plan, and
        # the pipeline from the start, where the pods are now as they are)
        if not run_all(ctx, _steps(plan, manifests_only), progress, until=lambda c: bool(c.wiring)):
            st.allocations = {k: {**a, "ipv4": ctx.wiring[k]["ipv4"]} if "ipv4" in ctx.wiring.get(k, {}) else a
                              for k, a in whole.allocations().items()}
            whole = _plan(st, _stored(st))
            plan = whole if command == "up" else whole.available()
            ctx = Context(plan, provider, say, previous=previous, verify=verify, incremental=manifests_only)
            run_all(ctx, _steps(plan, manifests_only), progress)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: lab {plan.lab} is partly made (phase creating); `testbed up "
                          f"{st.topology_file}` finishes it, `testbed down {plan.lab}` removes it") from None
    st.allocations = whole.allocations()
    st.readiness = _probed(whole)
    st.phase = "ready"
    st.save()
    lastplan.save(st, whole)
    events.emit(plan.lab, "Ready", f"lab/{plan.lab}", f"{command} done in {time.monotonic() - start:.2f}s",
                command=command, duration=round(time.monotonic() - start, 4))
    readiness.start(plan.lab)  # the control plane follows probes, heartbeats and machines from now on
    return ctx


def up(path: str | Path, say: Say = print, progress: Say | None = None, replace: bool = False,
       name: str | None = None) -> Context:
    """Creates the lab, or re-syncs it to the file: the file's manifests are refreshed (those gone from it are
    removed), the ones applied since stay. A lab running from another file is only re-synced with replace.
    name, when given, replaces the file's `name` (one file, several labs: CI jobs side by side)."""
    loaded = load(path)
    if name is not None:
        loaded.topology = loaded.topology.model_copy(update={"name": state.check_name(name, "--name")})
    topo, source = loaded.topology, str(Path(path).resolve())
    engines = preflight.engines(loaded)  # each must be able to run labs before anything is recorded
    with state.locked(topo.name):
        st = state.load(topo.name)
        if st and st.topology_file != source and not replace:
            raise InvalidInput([loaded.doc.problem(("name",), f"lab {topo.name} is running from "
                                                              f"{st.topology_file}; pass --replace to re-sync it "
                                                              "to this file, or choose another name")])
        manifests = _merge(_stored(st, ("apply",)), loaded.manifests) if st else loaded.manifests
        previous = _previous(st) if st else None
        # one lab at a time picks its underlay and records it, so labs brought up together never share one
        with state.allocation_lock():
            underlay = preflight.underlay(loaded, st)
            plan = build_plan(topo, manifests, underlay, st.allocations if st else None,
                              readiness.observed(topo.name), control(st) if st else None)
            preflight.check_names(engines, loaded, plan)
            kept = {"conditions": st.conditions, "generations": st.generations, "faults": st.faults_up()} if st else {}
            st = state.LabState(topo.name, source, topo.model_dump(mode="json", exclude={"manifests"}),
                                _record(manifests), st.allocations if st else {}, str(underlay), **kept)
            st.save()
        # `up` heals: what the kernel holds is read, not taken from the agents' memory of their last sync
        ctx = _converge(plan, st, next(iter(engines.values())), say, progress, previous, verify=True,
                        command="up")
    _settle_readiness(ctx, progress)
    return ctx


def _settle_readiness(ctx: Context, progress: Say | None) -> None:
    """`up` hands over a ready lab: it waits for probed pods (the DNS servers) to pass, then syncs the
    endpoints they bring."""
    planned = readiness.awaited(ctx.plan, ctx.notes.get(UNWIRED, set()))
    if not planned:
        return
    if progress:
        progress("Waiting for readiness probes")
    seen = readiness.wait(ctx.plan.lab, {p.key: p.node for p in ctx.plan.pods if p.key in planned})
    if {k: seen.get(k, False) for k in planned} != planned:
        ctx.plan = refresh(ctx.plan.lab).plan


def _require(name: str) -> state.LabState:
    st = state.load(name)
    if st is None:
        raise NotFound(f"no lab named {name!r} (labs: {', '.join(state.names()) or 'none'})")
    return st


def _plan(st: state.LabState, manifests: list[Manifest], seen: dict[str, bool] | None = None) -> Plan:
    """seen: probed pods' readiness (default: what the agents observe now)."""
    topo = Topology.model_validate(st.topology)
    return build_plan(topo, manifests, IPv4Network(st.underlay), st.allocations,
                      readiness.observed(st.name) if seen is None else seen, control(st))


def control(st: state.LabState) -> cluster.Control:
    down = {n for n, c in st.conditions.items() if not c.get("ready", True)} | st.held_down()
    return cluster.Control(down, dict(st.generations))


def refresh(name: str) -> Context:
    """Re-syncs the installers (Services, DNS, policy) to the readiness the agents observe now: what the
    controller calls when a probe flips."""
    with state.locked(name):
        st = _require(name)
        plan = _plan(st, _stored(st))
        ctx = Context(plan.available(), Provider(), lambda _: None, previous=_last(st).available(),
                      incremental=st.phase == "ready")
        run_all(ctx, installers())
        st.readiness = _probed(plan)
        st.save()
        lastplan.save(st, plan)
        return ctx


def heal(name: str, intact: Callable[[Plan], bool] | None = None, started: Sequence[str] = ()) -> bool:
    """What the kubelet and the node lifecycle controller do, for the lab's controller: the lab converged from
    its state (pods, links, routes, rules and daemons back where a machine restarted; evicted pods placed
    anew; a returning node's stale pods removed), unless intact(plan) says there is nothing to do. The nodes that
    started get their agents first (kinds/node.revive). Whether it converged."""
    with state.locked(name):
        st = _require(name)
        if st.phase != "ready":  # a command is at work, or stopped halfway: it finishes the job
            return False
        plan = _plan(st, _stored(st))
        engine = Provider()
        if started:
            revive(Context(plan, engine, lambda _: None), started)
        if intact is not None and intact(plan):
            return False
        _converge(plan, st, engine, lambda _: None, None, _previous(st), verify=True, command="heal")
        return True


def _probed(plan: Plan) -> dict[str, bool]:
    """The readiness the controller follows: probed pods', and pods whose network could not be made."""
    return {p.key: p.ready for p in plan.pods if p.probes or not p.ready}


def build_plan(topo: Topology, manifests: list[Manifest], underlay: IPv4Network,
               allocations: dict[str, dict[str, str]] | None = None,
               seen: dict[str, bool] | None = None, decided: cluster.Control | None = None) -> Plan:
    """The lab's plan (pure): its manifests with what the enabled installers add, placed and addressed.
    Raises InvalidInput naming the file, line and field."""
    return cluster.build(topo, _with_addons(topo, manifests), underlay, allocations, seen,
                         registry.traits(topo.networking.network), decided)


def load(path: str | Path) -> loader.TopologyFile:
    """A topology file, read and checked, also against what the registries know (its network mode)."""
    loaded = loader.load_topology(path)
    registry.check(loaded)
    return loaded


def _with_addons(topo: Topology, manifests: list[Manifest]) -> list[Manifest]:
    """The manifests, and the objects enabled installers add (not stored: they follow the installers)."""
    added = []
    for data in addons(topo, [m.obj for m in manifests]):
        result = loader.parse_manifest(Doc(data, f"(added by testbed: {data['kind']} {data['metadata']['name']})"))
        assert not isinstance(result, list), result
        result.origin = "addon"
        added.append(result)
    keys = {m.key for m in added}
    return [m for m in manifests if m.key not in keys] + added


def current_plan(name: str) -> tuple[state.LabState, Plan]:
    st = _require(name)
    return st, _plan(st, _stored(st))


def synced_plan(name: str) -> tuple[state.LabState, Plan]:
    """The plan as the lab's last sync made it (with the readiness it used, not the one the agents see now):
    what the nodes' rules and records hold, for checks to compare against."""
    st = _require(name)
    return st, _last(st)


def read_synced(name: str, read: Callable[[Plan], T], spoiled: Callable[[T], bool]) -> T:
    """read(plan) of what the nodes hold against the last sync's plan. The plan is taken once no sync runs, and
    the read is made again (twice at most) when a sync landed during it and spoiled(result) says it may have
    met a kernel and a plan of different syncs: the controller re-syncs whenever a probe flips."""
    for _ in range(3):
        with state.locked(name):
            _, plan = synced_plan(name)
            before = lastplan.stamp(name)
        result = read(plan)
        if not spoiled(result) or lastplan.stamp(name) == before:
            break
    return result


def _last(st: state.LabState) -> Plan:  # with the readiness it used: kept beside the state, else planned again
    return lastplan.load(st) or _plan(st, _stored(st), st.readiness)


def _previous(st: state.LabState) -> Plan | None:  # _last, if it still plans (an older testbed's may not)
    try:
        return _last(st)
    except Exception:
        return None


def _change(st: state.LabState, manifests: list[Manifest], say: Say, progress: Say | None, command: str,
            previous: Plan | None = None) -> Context:
    seen, record, last = readiness.observed(st.name), _record(manifests), previous or _previous(st)
    # the same objects again, the same readiness, nothing moved (move passes its before): it is the last plan
    same = bool(last) and not previous and record == st.manifests and seen == st.readiness
    if same and st.phase == "ready" and last is not None:
        # `kubectl apply`'s "unchanged": no step runs and nothing is written (at 10,000 pods, saving the state
        # twice and keying the plan took 0.4 s)
        events.emit(st.name, "Unchanged", f"lab/{st.name}", f"{command}: the lab holds it already", command=command)
        return Context(last, Provider(), say, previous=last, incremental=True)
    plan = last if same and last is not None else _plan(st, manifests, seen)
    previous = last
    st.manifests = record
    return _converge(plan, st, Provider(), say, progress, previous, command=command)


def apply(name: str, path: str | Path, say: Say = print, progress: Say | None = None) -> Context:
    new = loader.load_manifest_file(path)
    with state.locked(name):
        st = _require(name)
        return _change(st, _merge(_stored(st), new), say, progress, f"apply -f {path}")


def delete(name: str, path: str | Path, say: Say = print, progress: Say | None = None) -> list[str]:
    """Removes the file's objects (a Namespace takes its objects with it); returns those that were not there,
    as people read them."""
    keys = set(loader.load_keys(path))
    with state.locked(name):
        st = _require(name)
        old = _stored(st)
        namespaces = {k.rsplit("/", 1)[1] for k in keys if k.startswith("Namespace/")}
        missing = [loader.display(k) for k in sorted(keys - {m.key for m in old})]
        keep = [m for m in old if m.key not in keys and (isinstance(m.obj, kube.CLUSTER_SCOPED)
                                                         or (m.obj.metadata.namespace or "default") not in namespaces)]
        _change(st, keep, say, progress, f"delete -f {path}")
    return missing


def known_labs() -> set[str]:
    """Every lab something of which is on this machine, found by each kind of thing a lab makes."""
    names = set(state.names()) | underlay.lab_names()
    if state.run_root().is_dir():
        names |= {p.name for p in state.run_root().iterdir() if p.is_dir()}
    with contextlib.suppress(Exception):
        names |= Provider().lab_names()
    return {n for n in names if state.valid(n)}


def down(name: str, say: Say = print) -> bool:
    """Removes everything the lab made, on every host; safe to repeat and safe after a crash halfway through `up`.
    A host that cannot be reached is named, everything else is removed, and the lab's state stays (so `down` can
    be run again once the host answers)."""
    state.check_name(name)
    readiness.stop(name)  # first: its next sync would wait for the lock taken below
    events.forget(name)
    unreachable = []
    with state.locked(name):
        found = False
        for endpoint, provider in hosts.engines_of(name).items():
            try:
                found |= provider.remove_lab(name) > 0
            except (TestbedError, OSError, *engine_errors()) as err:
                if not endpoint:
                    raise
                unreachable.append(f"{endpoint}: {err}")
        found |= underlay.remove(name)
        if unreachable:
            raise EnvironmentProblem(f"lab {name}: removed what this machine and the reachable hosts held; "
                                     f"{len(unreachable)} host(s) could not be reached, and the lab's state is "
                                     f"kept for another `testbed down {name}`: " + "; ".join(unreachable))
        found |= state.remove_run_dir(name)
        found |= state.load(name) is not None
        state.remove(name)
    tidy()
    return found


def tidy() -> None:
    """The machine-wide allocation lock's file goes with the last lab (taking the lock removes it then)."""
    with state.allocation_lock():
        pass


def move(name: str, ref: str, to: str, say: Say = print, progress: Say | None = None) -> Context:
    """Recreates a pod on another node with the same IPs, in a network mode that routes pods by their own
    address (bgp); the new node announces the pod's /32 and /128, the old one withdraws them."""
    ns, _, pod_name = ref.rpartition("/")
    key = f"{ns or 'default'}/{pod_name}"
    with state.locked(name):
        st = _require(name)
        manifests = _stored(st)
        plan = _plan(st, manifests)
        network = plan.topology.networking.network
        if not plan.traits.keeps_ip_on_move:
            keeping = sorted(n for n, m in registry.modes().items() if m.keeps_ip_on_move)
            raise Refused(f"move of {key} refused, nothing was changed: network {network} cannot keep a pod's IP "
                          f"on another node (each node owns its range; networking.network in "
                          f"{st.topology_file}); networks that can: {', '.join(keeping)}")
        if plan.topology.cni != "builtin":
            raise Refused(f"move of {key} refused, nothing was changed: pods keep their IPs on another node only "
                          f"with the built-in wiring (cni: builtin); the plugins' IPAM owns each node's range")
        pod = next((p for p in plan.pods if p.key == key), None)
        if pod is None:
            raise NotFound(f"no pod {key} in lab {name}")
        if to not in {n.name for n in plan.nodes}:
            raise NotFound(f"no node {show(to)} in lab {name} (nodes: {', '.join(n.name for n in plan.nodes)})")
        intent = next(i for i in expand([m.obj for m in manifests]) if i.key == key)
        target = plan.node(to)
        if intent.node_name and intent.node_name != to:
            raise Refused(f"move of {key} refused, nothing was changed: it asks for nodeName {intent.node_name}")
        if wrong := {k: v for k, v in intent.node_selector.items() if target.labels.get(k) != v}:
            raise Refused(f"move of {key} refused, nothing was changed: node {to} does not match its nodeSelector "
                          f"({', '.join(f'{k}={v}' for k, v in wrong.items())})")
        before = _previous(st)  # the pod where it is: the nodes it leaves and joins are told
        st.allocations = {**st.allocations, key: {**st.allocations[key], "node": to}}
        return _change(st, manifests, say, progress, f"move {key} --to {to}", before)
