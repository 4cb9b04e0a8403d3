"""Pod creation rate (500 pods) and memory per idle pod.

Rate: the time the node agents take to build 500 pods (netns, veth, addresses, routes, workload sockets), and
the whole `apply` around it. Single runs swing by a quarter here, so each burst is made and deleted
TESTBED_BENCH_REPEAT times (default 5) on the same lab, and the rate is their median, beside the slowest and
fastest. Memory (first burst): the node containers' cgroup memory (which is charged the pods' kernel objects)
and the machine's MemAvailable, before and after, divided by the pod count.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import docker
from common import HERE, deployment, lab_up, quiet, timed

from testbed import lab, state
from testbed.runtime import agent

PODS = 500
REPEAT = int(os.environ.get("TESTBED_BENCH_REPEAT", "5"))
SETTLE_S = 3  # the kernel frees deleted pods' namespaces in the background; a burst should not share the cores


def _meminfo_available_kib() -> int:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))


def _cgroup_bytes(client: docker.DockerClient, names: list[str]) -> int:
    return sum(client.containers.get(n).stats(stream=False)["memory_stats"]["usage"] for n in names)


def _agent_rss_kib(name: str, nodes: list[str]) -> int:
    return sum(agent.call(state.run_root() / name / n, "status")["rss_kib"] for n in nodes)


def run() -> dict[str, float]:
    client = docker.from_env()
    out: dict[str, float] = {}
    with lab_up(HERE / "topology-pods.yaml") as ctx, tempfile.TemporaryDirectory() as tmp:
        nodes = [n.name for n in ctx.plan.nodes]
        containers = [n.container for n in ctx.plan.nodes]
        # one node: one agent's rate; then spread over the three nodes, agents working in parallel
        for label, node, count in (("one_node", "node1", PODS), ("three_nodes", None, PODS)):
            manifest = Path(tmp) / f"{label}.yaml"
            manifest.write_text(deployment(count, node))
            rates, applies, deletes = [], [], []
            for run_index in range(REPEAT):
                time.sleep(SETTLE_S)
                first = label == "one_node" and run_index == 0
                if first:
                    mem0, cg0 = _meminfo_available_kib(), _cgroup_bytes(client, containers)
                    rss0 = _agent_rss_kib(ctx.lab, nodes)
                t, c = timed(lambda m=manifest: lab.apply(ctx.lab, m, say=quiet))
                rates.append(count / c.timings["Creating pods"])
                applies.append(t)
                if first:
                    out["mem_cgroup_kib_per_pod"] = (_cgroup_bytes(client, containers) - cg0) / 1024 / count
                    out["mem_machine_kib_per_pod"] = (mem0 - _meminfo_available_kib()) / count
                    out["agent_rss_kib_per_pod"] = (_agent_rss_kib(ctx.lab, nodes) - rss0) / count
                t_del, _ = timed(lambda m=manifest: lab.delete(ctx.lab, m, say=quiet))
                deletes.append(count / t_del)
            out[f"{label}_pods_per_s"] = statistics.median(rates)
            out[f"{label}_pods_per_s_slowest"], out[f"{label}_pods_per_s_fastest"] = min(rates), max(rates)
            out[f"{label}_apply_s"] = statistics.median(applies)
            out[f"{label}_delete_pods_per_s"] = statistics.median(deletes)
    return out


if __name__ == "__main__":
    print(run())
