"""The runtime action: the node image, one container per node, and each node's agent answering."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from testbed.actions import Context
from testbed.errors import TestbedError
from testbed.plan.cluster import NodePlan
from testbed.runtime import agent, images
from testbed.runtime import docker as rt


class Nodes:
    title = "Starting node containers"

    def run(self, ctx: Context) -> None:
        if not images.present(ctx.client):
            images.build(ctx.client, ctx.say)
        image = images.reference()
        dual = ctx.plan.topology.networking.dualStack

        def one(node: NodePlan) -> None:
            c = rt.get(ctx.client, node.container)
            if c is not None and c.labels.get(rt.LAB) != ctx.lab:
                owner = f"lab {c.labels[rt.LAB]}" if rt.LAB in c.labels else "a container testbed did not make"
                raise TestbedError(f"container name {node.container} is taken by {owner}")
            if c is not None and (c.status != "running" or c.image.tags[:1] != [image]):
                c.remove(force=True)  # a crashed or outdated node is replaced; the later actions re-wire it
                c = None
            if c is None:
                rt.run_node(ctx.client, image, ctx.lab, node.name, node.container, ctx.run_dir(node.name), dual)
            agent.ensure_current(ctx.run_dir(node.name))

        # container starts are mostly waiting on dockerd, so they overlap well even on two cores
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(one, ctx.plan.nodes))
