"""The first action of every sync: one container per machine of every kind (nodes, the router, external hosts,
the fabric; each with its role label) from the current node image, and each machine's agent answering with this
install's code. A machine that crashed or runs an older image is replaced; the later actions re-wire it."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from testbed.actions import Context, each
from testbed.agent.version import code_version
from testbed.checks import HEAL, Finding, Observation, fail, ok
from testbed.errors import TestbedError
from testbed.plan.cluster import NodePlan
from testbed.plan.machines import ExternalPlan, FabricPlan, RouterPlan
from testbed.runtime import agent
from testbed.runtime.machines import Machine


class Nodes:
    name = "machines"
    title = "Starting containers"
    machines_only = True  # follows the topology alone: an apply of manifests skips it

    def check(self, obs: Observation, deep: bool) -> list[Finding]:
        """Every machine's container runs and its agent answers (all asked at once, each for a bounded time)
        with this install's code."""
        machines = obs.plan.machines()
        pings = obs.ask_all("ping", [m.name for m in machines])
        spread = len(obs.plan.topology.hosts) > 1
        out = []
        for m in machines:
            where = f" on {m.host}" if spread else ""
            state, reply = obs.state(m.name), pings[m.name]
            if state != "running":
                out.append(fail("container", m.name, f"{m.role} {m.name}{where}: container {m.container} is {state}",
                                hint=HEAL))
            elif reply is None:
                out.append(fail("agent", m.name, f"{m.role} {m.name}: its agent does not answer within "
                                                 f"{obs.wait:.0f} s ({obs.failures.get(m.name, 'no reply')})",
                                hint=f"`testbed logs {m.name}/agent` says why; {HEAL}"))
            elif reply.get("version") != code_version():
                out.append(fail("agent", m.name, f"{m.role} {m.name}: its agent runs older code", hint=HEAL))
            else:
                out.append(ok("agent", m.name, f"{m.role} {m.name}{where}: container running, agent answering"))
        return out

    def run(self, ctx: Context) -> None:
        image = ctx.provider.image_ready(ctx.say)
        for provider in {id(p): p for p in ctx.providers.values()}.values():  # each other host's engine has it too
            if provider is not ctx.provider:
                ctx.provider.copy_image_to(provider, ctx.say, image)
        dual = ctx.plan.topology.networking.dualStack
        fresh: dict[str, Machine] = {}
        kept: dict[str, Machine] = {}

        def container(node: NodePlan | RouterPlan | ExternalPlan | FabricPlan) -> None:
            provider = ctx.provider_of(node.name)
            m = provider.get(node.container)
            if m is not None and m.lab != ctx.lab:
                owner = f"lab {m.lab}" if m.lab else "a container testbed did not make"
                raise TestbedError(f"container name {node.container} is taken by {owner}")
            if m is not None and (m.state != "running" or m.image[:1] != [image]):
                m.remove()
                m = None
            if m is None:
                fresh[node.name] = provider.start(ctx.lab, node.name, node.container, ctx.run_dir(node.name), dual,
                                                  node.role)
            else:
                kept[node.name] = m

        def current(node: NodePlan | RouterPlan | ExternalPlan | FabricPlan) -> None:
            provider = ctx.provider_of(node.name)
            if (node.name in kept and not provider.endpoint.local
                    and agent.wait_ready(ctx.run_dir(node.name))["version"] != code_version()):
                kept[node.name].copy_code()  # on another host its code is a copy: the new one, which its agent
                # re-executes
            agent.ensure_current(ctx.run_dir(node.name))

        each(container, ctx.plan.machines())
        ctx.fresh.update(fresh)
        forked_agents(ctx, {**kept, **fresh}, fresh)
        each(current, ctx.plan.machines())


def _answers(run_dir: Path) -> bool:
    try:
        agent.call(run_dir, "ping", timeout=2)
        return True
    except (OSError, agent.AgentError):
        return False


def forked_agents(ctx: Context, machines: dict[str, Machine], fresh: Iterable[str] = ()) -> None:
    """An agent for each node among machines that has none, forked by its host's fabric (agent/zygote.py): every
    fresh one, and a running one whose agent does not answer (its container was started again)."""
    new = set(fresh)
    ctx.remember(machines)
    by_host: dict[str, list[dict[str, object]]] = {}

    def needs(n: NodePlan) -> bool:
        m = machines[n.name]
        return n.name in new or (m.state == "running" and not _answers(ctx.run_dir(n.name)))

    # asked of every node at once: the control plane revives all 200 of a lab it starts watching, one ping each
    given = [n for n in ctx.plan.nodes if n.name in machines]
    for n, wanted in zip(given, each(needs, given), strict=True):
        if wanted:
            by_host.setdefault(n.host, []).append({"name": n.name, "pid": ctx.pid(n.name)})
    fabrics = {f.host: f for f in ctx.plan.fabrics}

    def ask(host: str) -> None:
        run_dir = ctx.run_dir(fabrics[host].name)
        agent.ensure_current(run_dir)  # what it forks runs the code it loaded
        reply = agent.call(run_dir, "agents", machines=by_host[host])
        if reply.get("errors"):
            raise TestbedError("no agent could be started in " + "; ".join(f"{name}: {why}" for name, why in
                                                                         sorted(reply["errors"].items())))

    each(ask, list(by_host))


def revive(ctx: Context, names: Iterable[str]) -> None:
    """For the control plane: nodes that started again (a restart, a fault cleared) get their agents back before
    it decides what to converge; until its agent beats, such a node is not even in the plan it converges."""
    nodes = {node.name for node in ctx.plan.nodes}
    wanted = [n for n in names if n in nodes]
    found = dict(zip(wanted, each(lambda n: ctx.provider_of(n).get(ctx.plan.machine(n).container), wanted),
                     strict=True))
    forked_agents(ctx, {n: m for n, m in found.items() if m is not None})
