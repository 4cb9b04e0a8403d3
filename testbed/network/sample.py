"""Real traffic across the pod network: from one pod on each node to one pod on every other node, the probes
of each source in one exec, the sources at once. Every network mode's deep check ends with it."""

from __future__ import annotations

from testbed.actions import each
from testbed.checks import HEAL, Finding, Observation, fail, ok
from testbed.plan.cluster import Plan, PodPlan
from testbed.policy.evaluate import decide
from testbed.runtime import probing

CHECK = "cross-node traffic"


def _listeners(plan: Plan, node: str) -> list[tuple[PodPlan, int]]:
    """Pods on the node whose netexec answers on a TCP port (a pod that runs its own process may not)."""
    out = []
    for pod in plan.pods_on(node):
        port = next((p.port for p in pod.ports if p.protocol == "TCP"), None)
        if port and not pod.processes:
            out.append((pod, port))
    return out


def _pair(plan: Plan, a: str, b: str) -> tuple[PodPlan, PodPlan, int] | None:
    """A pod on a and a listening pod on b that the NetworkPolicies let talk: the sample tests the network,
    not the policies (the matrix does that)."""
    for dst, port in _listeners(plan, b):
        for src in plan.pods_on(a):
            if decide(plan.policies, plan.namespaces, src, src.ipv4, dst, dst.ipv4, port, "TCP").allowed:
                return src, dst, port
    return None


def cross_node(obs: Observation) -> list[Finding]:
    plan = obs.plan
    nodes = [n.name for n in plan.nodes if obs.running(n.name)]
    if len(nodes) < 2:
        return []
    pairs = {(a, b): found for i, a in enumerate(nodes) for b in nodes[i + 1:] if (found := _pair(plan, a, b))}
    if not pairs:
        return [fail(CHECK, "", "no pair of nodes has a pod to send from and a netexec pod to answer that the "
                                "policies allow", status="warn")]

    def probe(src_node: str) -> list[Finding]:
        mine = [(b, found) for (a, b), found in pairs.items() if a == src_node]
        out = []
        by_source: dict[str, list[tuple[str, PodPlan, PodPlan, int]]] = {}
        for dst_node, (src, dst, port) in mine:
            by_source.setdefault(src.key, []).append((dst_node, src, dst, port))
        for group in by_source.values():
            src = group[0][1]
            got = probing.connect_many(plan, src, [(dst.ipv4, port, "tcp") for _, _, dst, port in group], tries=2)
            out += [_finding(src_node, dst_node, s, pod, port, result)
                    for (dst_node, s, pod, port), result in zip(group, got, strict=True)]
        return out

    return [f for found in each(probe, sorted({a for a, _ in pairs})) for f in found]


def _finding(src_node: str, dst_node: str, src: PodPlan, pod: PodPlan, port: int, result: str) -> Finding:
    what = f"{src.key} on {src_node} → {pod.key} on {dst_node} ({pod.ipv4}:{port})"
    return ok(CHECK, f"{src_node}→{dst_node}", what) if result == "connected" else \
        fail(CHECK, f"{src_node}→{dst_node}", f"{what}: {result}",
             hint=f"`testbed trace {src.key} {pod.ipv4}:{port}` shows where it stops; {HEAL} when a route or "
                  "device is missing")
