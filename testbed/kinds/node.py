"""The first action of every sync: one container per machine of every kind (nodes, the router, external hosts,
the fabric; each with its role label) from the current node image, and each machine's agent answering with this
install's code. A machine that crashed or runs an older image is replaced; the later actions re-wire it."""

from __future__ import annotations

from testbed.actions import Context, each
from testbed.agent.version import code_version
from testbed.checks import HEAL, Finding, Observation, fail, ok
from testbed.errors import TestbedError
from testbed.plan.cluster import NodePlan
from testbed.plan.machines import ExternalPlan, FabricPlan, RouterPlan
from testbed.runtime import agent


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

        def one(node: NodePlan | RouterPlan | ExternalPlan | FabricPlan) -> None:
            provider = ctx.provider_of(node.name)
            m = provider.get(node.container)
            if m is not None and m.lab != ctx.lab:
                owner = f"lab {m.lab}" if m.lab else "a container testbed did not make"
                raise TestbedError(f"container name {node.container} is taken by {owner}")
            if m is not None and (m.state != "running" or m.image[:1] != [image]):
                m.remove()
                m = None
            if m is None:
                provider.start(ctx.lab, node.name, node.container, ctx.run_dir(node.name), dual, node.role)
            elif not provider.endpoint.local and agent.wait_ready(ctx.run_dir(node.name))["version"] != code_version():
                m.copy_code()  # on another host its code is a copy: the new one, which its agent re-executes
            agent.ensure_current(ctx.run_dir(node.name))

        each(one, ctx.plan.machines())
