"""Faults of machines and pods: a node stopped, started, restarted or paused (frozen: its links stay up, it
answers nothing, as a hung machine), the router restarted, a pod killed (its process, or for a netexec pod its
sockets, made again after a moment, as a container restart)."""

from __future__ import annotations

from typing import Any

from testbed.faults import Fault, Kind, node, register
from testbed.plan.cluster import Plan
from testbed.runtime import agent, podexec
from testbed.runtime.machines import Provider


def _machine(plan: Plan, name: str) -> Any:
    found = Provider().get(plan.machine(name).container)
    if found is None:
        raise RuntimeError(f"the container of {name} is missing; `testbed up` makes it again")
    return found


class _Lifecycle(Kind):
    action: str = ""
    back: str | None = None  # what undoes it

    def check(self, plan: Plan, args: dict[str, Any]) -> None:
        node(plan, args["node"])

    def apply(self, plan: Plan, fault: Fault) -> None:
        _machine(plan, fault.args["node"]).lifecycle(self.action)
        if self.back:  # stopped or frozen until cleared: the control plane must not start it again (state.py)
            fault.notes["down"] = True

    def undo(self, plan: Plan, fault: Fault) -> None:
        if self.back:
            machine = _machine(plan, fault.args["node"])
            if machine.state != "running" or self.back == "unpause":
                machine.lifecycle(self.back)


@register
class NodeStop(_Lifecycle):
    name, action, back = "node-stop", "stop", "start"
    summary = "stop the node's container (clear: start it; the control plane brings its pods back)"


@register
class NodeStart(_Lifecycle):
    name, action, undoable, starts_node = "node-start", "start", False, True
    summary = "start a stopped node's container"


@register
class NodeRestart(_Lifecycle):
    name, action, undoable, starts_node = "node-restart", "restart", False, True
    summary = "restart the node's container (the control plane brings its pods back, same IPs)"


@register
class NodePause(_Lifecycle):
    name, action, back = "node-pause", "pause", "unpause"
    summary = "freeze the node's container: a hung node, its links up (clear: thaw it)"


@register
class RouterRestart(Kind):
    name, undoable = "router-restart", False
    summary = "restart the router's container (the control plane rewires it)"

    def check(self, plan: Plan, args: dict[str, Any]) -> None:
        if plan.router is None:
            raise RuntimeError("this lab has no router")

    def apply(self, plan: Plan, fault: Fault) -> None:
        assert plan.router is not None
        _machine(plan, plan.router.name).lifecycle("restart")


@register
class Kill(Kind):
    name, undoable = "kill", False
    summary = "kill a pod's process (a netexec pod: its sockets), which comes back as a restarted container"

    def check(self, plan: Plan, args: dict[str, Any]) -> None:
        podexec.resolve(plan, args["pod"])

    def apply(self, plan: Plan, fault: Fault) -> None:
        pod = next(p for p in plan.pods if p.key == fault.args["pod"] or p.name == fault.args["pod"])
        agent.call(_run_dir(plan, pod.node), "kill_pod", netns=pod.netns)


def _run_dir(plan: Plan, machine: str) -> Any:
    from testbed import state

    return state.run_dir(plan.lab) / machine
