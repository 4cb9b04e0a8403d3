"""hostPort with the built-in wiring, as the CNI portmap plugin makes it with the reference plugins: traffic to
one of the node's own addresses on a pod's hostPort is DNATed to the pod (from outside, and from the node
itself). One nftables table per node, `inet testbed-hostport`, a map from protocol and port to the pod's
address and containerPort, replaced atomically by the node's agent; nodes without hostPorts hold none."""

from __future__ import annotations

import time

from testbed.actions import Change, Context, each
from testbed.checks import Finding, Observation, compared
from testbed.installers import Installer, register, report
from testbed.model.topology import Topology
from testbed.plan.cluster import NodePlan, Plan
from testbed.runtime import agent

FAMILY, TABLE = "inet", "testbed-hostport"


def render(plan: Plan, node: NodePlan) -> str | None:
    """The node's table, or None when no pod on it asks for a hostPort."""
    maps: dict[int, list[str]] = {4: [], 6: []}
    for pod in plan.pods_on(node.name):
        for port in pod.ports:
            if port.host_port:
                for family, ip in ((4, pod.ipv4), (6, pod.ipv6)):
                    if ip:
                        maps[family].append(f"{port.protocol.lower()} . {port.host_port} : {ip} . {port.port}")
    if not maps[4]:
        return None
    lines = [f"table {FAMILY} {TABLE} {{"]
    rules = []
    for family, entries in maps.items():
        if not entries:
            continue
        addr = "ipv4_addr" if family == 4 else "ipv6_addr"
        lines.append(f"  map hostports{family} {{ type inet_proto . inet_service : {addr} . inet_service; "
                     f"elements = {{ {', '.join(entries)} }} }}")
        nf = "ip" if family == 4 else "ip6"
        rules.append(f"    meta nfproto ipv{family} meta l4proto {{ tcp, udp, sctp }} fib daddr type local "
                     f"dnat {nf} to meta l4proto . th dport map @hostports{family}")
    for chain, hook in (("prerouting", "prerouting"), ("output", "output")):  # before kube-proxy's (dstnat)
        lines += [f"  chain {chain} {{", f"    type nat hook {hook} priority -101; policy accept;", *rules,
                  "  }"]
    lines.append("}")
    return "\n".join(lines) + "\n"


@register
class HostPorts(Installer):
    name = "hostports"
    title = "hostPorts"

    def enabled(self, topo: Topology) -> bool:
        return topo.cni == "builtin"  # the CNI plugins' portmap serves them otherwise

    def _apply(self, ctx: Context, rendered: bool) -> Change:
        def one(node: NodePlan) -> bool:
            if rendered and ctx.unchanged(lambda p: render(p, p.node(node.name))):
                return False  # the node holds this table: nothing is sent
            start = time.monotonic()
            text = render(ctx.plan, node) if rendered else None
            if text is None and node.name in ctx.fresh:
                return False  # a new container holds no table to remove
            answer = agent.call(ctx.run_dir(node.name), "rules", family=FAMILY, table=TABLE, text=text,
                                verify=ctx.verify)
            return report(ctx, self.name, node.name, f"table {FAMILY} {TABLE}", answer, start)

        return Change(changed=sum(each(one, ctx.plan.nodes)))

    def install(self, ctx: Context) -> Change:
        return self._apply(ctx, True)

    def uninstall(self, ctx: Context) -> Change:
        return self._apply(ctx, False)

    def check(self, obs: Observation, deep: bool) -> list[Finding]:
        if not deep:
            return []

        def one(node: NodePlan) -> Finding | None:
            text = render(obs.plan, node)
            return compared("hostPort rules", node.name, f"table {FAMILY} {TABLE}",
                            obs.call(node.name, "compare", kind="nft", family=FAMILY, table=TABLE, text=text))

        return [f for f in each(one, obs.plan.nodes) if f is not None]
