"""The registry of pod network modes. A mode is one module under testbed/network/modes/ that registers a
NetworkMode subclass; nothing else names it. Topology validation, the pod MTU, the pipeline, `move` and status
all ask the registry.

A lab runs exactly one mode; every other registered mode is uninstalled on each sync, so switching a running
lab with `up` leaves nothing of the old one behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from testbed.errors import InvalidInput, show
from testbed.model.hosts import STITCH_OVERHEAD
from testbed.plan.cluster import NetworkTraits
from testbed.plugins import Registry

if TYPE_CHECKING:
    from testbed.actions import Change, Context
    from testbed.checks import Finding, Observation
    from testbed.model.loader import TopologyFile
    from testbed.plan.cluster import Plan


class NetworkMode:
    """One way of carrying pod traffic between nodes."""

    name: ClassVar[str]
    overhead: ClassVar[int] = 0  # encapsulation bytes: pods get the underlay MTU minus this
    keeps_ip_on_move: ClassVar[bool] = False  # pods may live outside their node's range (routes follow them)
    follows_objects: ClassVar[bool] = False  # what it programs depends on pods or Services, not on nodes alone
    device: ClassVar[str | None] = None  # the node link that carries it, shown in status
    title: ClassVar[str] = ""

    def install(self, ctx: Context) -> Change:
        """Make every node (and the router) carry pod traffic this way; safe to repeat."""
        raise NotImplementedError

    def uninstall(self, ctx: Context) -> Change:
        """Remove everything this mode makes, from every machine; safe when none of it is there."""
        raise NotImplementedError

    def settle(self, ctx: Context) -> None:
        """Wait, at the end of the pipeline, until traffic flows (routes learnt); nothing to wait for by
        default. Later steps (pods, installers) run while a mode settles."""

    def status(self, plan: Plan, run_dir: Path) -> dict[str, Any]:
        """Mode-specific observations (sessions, announced prefixes), from the lab's run folder; none by default."""
        return {}

    def check(self, obs: Observation, deep: bool) -> list[Finding]:
        """What the kernel and the mode's daemons hold on every node, against the plan; nothing by default."""
        return []

    def router_learns(self, plan: Plan) -> bool:
        """True when the router learns pod routes by itself (BGP); otherwise it gets static routes."""
        return False


_REGISTRY: Registry[NetworkMode] = Registry("testbed.network.modes")
register = _REGISTRY.register
modes = _REGISTRY.all


def mode(name: str) -> NetworkMode:
    return modes()[name]()


def traits(name: str) -> NetworkTraits:
    """What the plan needs of a mode (the plan does not look modes up itself)."""
    cls = modes()[name]
    return NetworkTraits(overhead=cls.overhead, keeps_ip_on_move=cls.keeps_ip_on_move)


def check(loaded: TopologyFile) -> None:
    """What the topology asks of its pod network that only the registry can judge, as file:line:field errors:
    a mode that exists, and room for IPv6's 1280-byte minimum in the pods' MTU."""
    net, known = loaded.topology.networking, modes()
    if net.network not in known:
        reason = f"{show(net.network)} is not supported; choose one of: {', '.join(sorted(known))}"
        raise InvalidInput([loaded.doc.problem(("networking", "network"), reason)])
    stitch = STITCH_OVERHEAD if len(loaded.topology.hosts) > 1 else 0  # the hosts' VXLAN takes its share first
    pod_mtu = net.mtu - stitch - known[net.network].overhead
    if net.dualStack and pod_mtu < 1280:
        over = " over several hosts" if stitch else ""
        raise InvalidInput([loaded.doc.problem(("networking", "mtu"), f"networking.mtu {net.mtu} leaves pods "
                                                                      f"{pod_mtu} with {net.network}{over}, below "
                                                                      "IPv6's 1280")])


class PodNetwork:
    """The pipeline's step for the pod network: every other mode uninstalled, then the lab's mode installed."""

    def __init__(self, chosen: str) -> None:
        self.chosen = chosen
        self.name = chosen
        self.title = f"Pod network ({chosen})"
        # a mode that follows the nodes alone is a machine step: an apply of manifests skips it
        self.machines_only = not mode(chosen).follows_objects

    def check(self, obs: Observation, deep: bool) -> list[Finding]:
        """The lab's mode's own checks, then (deep) real traffic between one pod of each pair of nodes."""
        from testbed.network.sample import cross_node

        return mode(self.chosen).check(obs, deep) + (cross_node(obs) if deep else [])

    def run(self, ctx: Context) -> Change:
        from testbed.actions import Change

        change = Change()
        # the other modes went when the lab's last sync ran this one; new containers never held them
        if not ctx.unchanged(lambda p: p.topology.networking.network) and \
                not all(m.name in ctx.fresh for m in ctx.plan.machines()):
            for name, cls in modes().items():
                if name != self.chosen:
                    change += cls().uninstall(ctx)
        return change + mode(self.chosen).install(ctx)


class Settle:
    """The pipeline's last step: the lab's mode has converged when `up` returns."""

    title = "Waiting for the pod network"

    def run(self, ctx: Context) -> None:
        mode(ctx.plan.topology.networking.network).settle(ctx)
