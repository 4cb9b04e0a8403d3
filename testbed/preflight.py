"""What `up` checks before anything is made, beside planning: the underlay range a lab may take (its own, one
it names, or a free one no other lab's overlaps), and container names no other lab or program holds. Each
refusal names the topology file's field."""

from __future__ import annotations

from ipaddress import IPv4Network

from testbed import state
from testbed.errors import InvalidInput, TestbedError
from testbed.model import loader
from testbed.model.topology import underlay_holds
from testbed.plan import ipam, machines
from testbed.plan.cluster import Plan
from testbed.runtime.machines import Provider, engine_errors, provider


def engines(loaded: loader.TopologyFile) -> dict[str, Provider]:
    """Each host's engine, reached before anything is made: a lab without `hosts:` runs on the engine the docker
    CLI picks, which must be this machine's (its machines' run folders are here); each engine a host names must
    answer."""
    topo = loaded.topology
    if not topo.hosts:
        local = provider()
        local.check_usable()
        return {machines.LOCAL_HOST: local}
    out, problems = {}, []
    for i, h in enumerate(topo.hosts):
        try:
            engine = provider(h.engine)
            engine.client  # noqa: B018 (connects, or says why not)
            out[h.name] = engine
        except (TestbedError, OSError, *engine_errors()) as err:
            problems.append(loaded.doc.problem(("hosts", i, "engine") if h.engine else ("hosts", i),
                                               f"host {h.name}: {err}"))
    if problems:
        raise InvalidInput(problems)
    out[topo.hosts[0].name].check_usable(remote_ok=True)  # the first builds the node image; `up` copies it on
    return out


def underlay(loaded: loader.TopologyFile, st: state.LabState | None) -> IPv4Network:
    """The lab's underlay: the one it named (overlapping no other lab's), the one it holds (if its nodes still
    fit), else the first free range."""
    topo = loaded.topology
    others = [o for n in state.names() if (o := state.load(n)) and o.name != topo.name and o.underlay]
    wanted = topo.networking.underlayCIDR
    if wanted is not None:
        for o in others:
            if wanted.overlaps(IPv4Network(o.underlay)):
                raise InvalidInput([loaded.doc.problem(
                    ("networking", "underlayCIDR"),
                    f"{wanted} overlaps the underlay {o.underlay} of lab {o.name} (from {o.topology_file})")])
        return wanted
    if st and st.underlay:
        held = IPv4Network(st.underlay)
        if (fit := underlay_holds(held)) < len(topo.nodes):
            raise InvalidInput([loaded.doc.problem(
                ("nodes",), f"the lab's underlay {held} holds {fit} nodes, fewer than the {len(topo.nodes)} asked "
                            f"for: `testbed down {topo.name}` and up again gives it a wider one")])
        return held
    return ipam.free_underlay([o.underlay for o in others], len(topo.nodes))


def check_names(providers: dict[str, Provider], loaded: loader.TopologyFile, plan: Plan) -> None:
    """Container names are `<lab>-<node>`, so labs `a` and `a-b` can both want `a-b-node1`; a container that
    testbed did not make can hold one too. Found before anything is made."""
    problems = []
    for i, node in enumerate(plan.machines()):
        m = providers[node.host].get(node.container)
        owner = m.lab if m is not None else plan.lab
        if owner == plan.lab:
            continue
        other = state.load(owner) if owner and state.valid(owner) else None
        who = (f"lab {owner}" + (f" (from {other.topology_file})" if other else "")) if owner \
            else "a container testbed did not make"
        where = ("nodes", i) if i < len(plan.nodes) and "nodes" in loaded.doc.data else ("name",)
        problems.append(loaded.doc.problem(where, f"container name {node.container} is taken by {who}; rename "
                                                  "the lab or the node"))
    if problems:
        raise InvalidInput(problems)
