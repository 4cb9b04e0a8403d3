"""The runtime action: the node image, one container per machine (nodes, the router, external hosts; each with
its role label), and each machine's agent answering, with this install's code."""

from __future__ import annotations

from testbed.actions import Context, each
from testbed.errors import TestbedError
from testbed.plan.cluster import NodePlan
from testbed.plan.machines import ExternalPlan, RouterPlan
from testbed.runtime import agent, images
from testbed.runtime import docker as rt


class Nodes:
    title = "Starting containers"

    def run(self, ctx: Context) -> None:
        if not images.present(ctx.client):
            images.build(ctx.client, ctx.say)
        image = images.reference()
        dual = ctx.plan.topology.networking.dualStack

        def one(node: NodePlan | RouterPlan | ExternalPlan) -> None:
            c = rt.get(ctx.client, node.container)
            if c is not None and c.labels.get(rt.LAB) != ctx.lab:
                owner = f"lab {c.labels[rt.LAB]}" if rt.LAB in c.labels else "a container testbed did not make"
                raise TestbedError(f"container name {node.container} is taken by {owner}")
            if c is not None and (c.status != "running" or c.image.tags[:1] != [image]):
                c.remove(force=True)  # a crashed or outdated node is replaced; the later actions re-wire it
                c = None
            if c is None:
                rt.run_node(ctx.client, image, ctx.lab, node.name, node.container, ctx.run_dir(node.name), dual,
                            node.role)
            agent.ensure_current(ctx.run_dir(node.name))

        each(one, ctx.plan.machines())
