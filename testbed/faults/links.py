"""Faults of the underlay: a node's link down, a partition between groups of nodes, random loss, a rate cap,
and a delay. Loss and partitions are nftables rules on the fabric bridge, in the fabric machine's namespace (this
kernel has no netem: `numgen random` drops instead), the rate a tbf qdisc on both ends of the node's link, the
delay a userspace delayer in the node's agent fed by iptables NFQUEUE (agent/delayer.py)."""

from __future__ import annotations

import re
from typing import Any

from testbed import state
from testbed.errors import EnvironmentProblem
from testbed.faults import Fault, Kind, bad, node, register
from testbed.network.underlay import NODE_IF, fabric_if
from testbed.plan.cluster import Plan
from testbed.runtime import agent, podexec

RATE = re.compile(r"^(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit|[kMG])$")


def _run(plan: Plan, argv: list[str], stdin: str = "", check: bool = True) -> None:
    """A command in the fabric machine, through its agent (never in the host's namespaces)."""
    done = agent.call(state.run_dir(plan.lab) / plan.fabric.name, "run", argv=argv, input=stdin, seconds=20)
    if check and done["code"] != 0:
        raise EnvironmentProblem(f"{argv[0]} in the lab's fabric: {done['stderr'].strip()[-300:]}")


def _table(fault: Fault) -> str:
    return f"fault{fault.id}"


def _drop_table(plan: Plan, fault: Fault) -> None:
    _run(plan, ["nft", "-f", "-"], f"table bridge {_table(fault)}\ndelete table bridge {_table(fault)}\n")


def _group(plan: Plan, text: str, what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise bad(what, "name at least one node")
    return [node(plan, n) for n in names]


@register
class LinkDown(Kind):
    name = "link-down"
    summary = "set the node's underlay link down (clear: up)"

    def check(self, plan: Plan, args: dict[str, Any]) -> None:
        node(plan, args["node"])

    def _set(self, plan: Plan, fault: Fault, up: bool) -> None:
        _run(plan, ["ip", "link", "set", "dev", fabric_if(fault.args["node"]), "up" if up else "down"], check=False)

    def apply(self, plan: Plan, fault: Fault) -> None:
        self._set(plan, fault, False)

    def undo(self, plan: Plan, fault: Fault) -> None:
        self._set(plan, fault, True)


@register
class Partition(Kind):
    name = "partition"
    summary = "drop everything between two groups of nodes on the fabric (clear: let it through)"

    def check(self, plan: Plan, args: dict[str, Any]) -> None:
        a, b = _group(plan, args["nodes"], "NODES"), _group(plan, args["from"], "--from")
        if set(a) & set(b):
            raise bad("--from", f"the groups overlap: {', '.join(sorted(set(a) & set(b)))}")

    def apply(self, plan: Plan, fault: Fault) -> None:
        a = ", ".join(f'"{fabric_if(n)}"' for n in _group(plan, fault.args["nodes"], "NODES"))
        b = ", ".join(f'"{fabric_if(n)}"' for n in _group(plan, fault.args["from"], "--from"))
        _run(plan, ["nft", "-f", "-"], f"table bridge {_table(fault)} {{\n"
             "  chain forward { type filter hook forward priority -10; policy accept;\n"
             f"    iifname {{ {a} }} oifname {{ {b} }} drop\n    iifname {{ {b} }} oifname {{ {a} }} drop\n  }}\n}}\n")

    def undo(self, plan: Plan, fault: Fault) -> None:
        _drop_table(plan, fault)


@register
class Loss(Kind):
    name = "loss"
    summary = "drop PERCENT of what the node sends onto the fabric, at random (clear: stop)"

    def check(self, plan: Plan, args: dict[str, Any]) -> None:
        node(plan, args["node"])
        if not 0 <= float(args["percent"]) <= 100:
            raise bad("PERCENT", f"{args['percent']} is outside 0-100")

    def apply(self, plan: Plan, fault: Fault) -> None:
        per_10k = round(float(fault.args["percent"]) * 100)
        port = fabric_if(fault.args["node"])
        _run(plan, ["nft", "-f", "-"], f"table bridge {_table(fault)} {{\n"
             "  chain forward { type filter hook forward priority -10; policy accept;\n"
             f'    iifname "{port}" numgen random mod 10000 < {per_10k} drop\n  }}\n}}\n')

    def undo(self, plan: Plan, fault: Fault) -> None:
        _drop_table(plan, fault)


def rate_bits(text: str) -> int:
    match = RATE.match(text)
    if not match:
        raise bad("RATE", f"{text!r} is not a rate (e.g. 10mbit, 500kbit, 1gbit, 10M)")
    scale = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "k": 1e3, "M": 1e6, "G": 1e9}[match.group(2)]
    bits = int(float(match.group(1)) * scale)
    if bits < 8000:
        raise bad("RATE", f"{text!r} is below 8kbit")
    return bits


@register
class Rate(Kind):
    name = "rate"
    summary = "cap the node's underlay link at RATE, both ways, with tbf (clear: remove it)"

    def check(self, plan: Plan, args: dict[str, Any]) -> None:
        node(plan, args["node"])
        rate_bits(args["rate"])

    def apply(self, plan: Plan, fault: Fault) -> None:
        bits = rate_bits(fault.args["rate"])
        tbf = ["tbf", "rate", f"{bits}bit", "burst", str(max(bits // 800, 16384)), "latency", "100ms"]
        machine = podexec.running(plan.machine(fault.args["node"]).container, None)
        got = machine.exec(["tc", "qdisc", "replace", "dev", NODE_IF, "root", *tbf])
        if got.exit_code != 0:
            raise EnvironmentProblem(f"tc in {fault.args['node']}: {got.stderr.strip()}")
        _run(plan, ["tc", "qdisc", "replace", "dev", fabric_if(fault.args["node"]), "root", *tbf])

    def undo(self, plan: Plan, fault: Fault) -> None:
        machine = podexec.running(plan.machine(fault.args["node"]).container, None)
        machine.exec(["tc", "qdisc", "del", "dev", NODE_IF, "root"])
        _run(plan, ["tc", "qdisc", "del", "dev", fabric_if(fault.args["node"]), "root"], check=False)


@register
class Delay(Kind):
    name = "delay"
    summary = ("delay what the node sends on its underlay link by MS (± --jitter): iptables NFQUEUE to a "
               "delayer in its agent, which passes packets undelayed when its queue overflows (counted)")

    def check(self, plan: Plan, args: dict[str, Any]) -> None:
        node(plan, args["node"])
        ms, jitter = float(args["ms"]), float(args.get("jitter") or 0)
        if not 0 < ms <= 10000 or not 0 <= jitter <= ms:
            raise bad("MS", f"{ms:g} ms (jitter {jitter:g}) must be in 0-10000 ms, the jitter at most the delay")

    def apply(self, plan: Plan, fault: Fault) -> None:
        """netem where the kernel has it; the NFQUEUE delayer otherwise (this machine's case)."""
        from testbed import state

        ms, jitter = float(fault.args["ms"]), float(fault.args.get("jitter") or 0)
        machine = podexec.running(plan.machine(fault.args["node"]).container, None)
        netem = machine.exec(["tc", "qdisc", "replace", "dev", NODE_IF, "root", "netem", "delay", f"{ms}ms",
                              f"{jitter}ms"])
        fault.notes["via"] = "netem" if netem.exit_code == 0 else "nfqueue"
        if netem.exit_code != 0:
            agent.call(state.run_dir(plan.lab) / fault.args["node"], "delay", ms=ms, jitter=jitter)

    def undo(self, plan: Plan, fault: Fault) -> None:
        from testbed import state

        if fault.notes.get("via") == "netem":
            podexec.running(plan.machine(fault.args["node"]).container, None).exec(
                ["tc", "qdisc", "del", "dev", NODE_IF, "root"])
        else:
            agent.call(state.run_dir(plan.lab) / fault.args["node"], "delay", ms=0.0, jitter=0.0)

