"""The registry of installers: what runs on every node after the pod network (egress NAT, kube-proxy, DNS,
NetworkPolicy, ingress). Each is one module here that registers an Installer subclass. On each sync an
enabled installer is installed and a disabled one uninstalled, so turning one off (or switching it) leaves
nothing of it behind.

Per-node rules are rendered by pure functions (`render`) and applied by each node's agent in one transaction.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

from testbed.plugins import Registry

if TYPE_CHECKING:
    from testbed.actions import Change, Context
    from testbed.checks import Finding, Observation
    from testbed.model.topology import Topology



class Installer:
    name: ClassVar[str]
    title: ClassVar[str]

    def enabled(self, topo: Topology) -> bool:
        return True

    def manifests(self, topo: Topology, objects: list[Any]) -> list[dict[str, Any]]:
        """Objects the installer adds to the plan, as kubeadm adds its addons (the DNS pods and Service), given
        the lab's own objects (an ingress controller follows the Gateways there are)."""
        return []

    def prepare(self, ctx: Context) -> Change | None:
        """Before the pods are synced: what the installer's own pods read when they start (as a ConfigMap a
        pod mounts exists before the pod), so they never start without it. Nothing by default."""
        return None

    def install(self, ctx: Context) -> Change:
        raise NotImplementedError

    def uninstall(self, ctx: Context) -> Change:
        raise NotImplementedError

    def check(self, obs: Observation, deep: bool) -> list[Finding]:
        """What the installer's rules, records or daemons hold on every node against the plan (deep: compared
        with the kernel's, and with real traffic); nothing by default."""
        return []


_REGISTRY: Registry[Installer] = Registry(__name__)
register = _REGISTRY.register
registered = _REGISTRY.all


class Step:
    """One installer as a pipeline action."""

    def __init__(self, installer: Installer) -> None:
        self.installer = installer
        self.title = installer.title
        self.name = installer.name

    def check(self, obs: Observation, deep: bool) -> list[Finding]:
        if not self.installer.enabled(obs.plan.topology):
            return []
        return self.installer.check(obs, deep)

    def run(self, ctx: Context) -> Change:
        from testbed.actions import Change

        if ctx.as_last:  # no node's share is rendered at all (1,000 Services on 200 nodes took kube-proxy a
            return Change()  # minute of rendering to find nothing to send)
        if self.installer.enabled(ctx.plan.topology):
            return self.installer.install(ctx)
        return self.installer.uninstall(ctx)


def report(ctx: Context, installer: str, node: str, what: str, answer: dict[str, Any], start: float) -> bool:
    """An event for one node's sync of one installer's rules, when it changed anything; answers whether it did."""
    if not answer.get("changed"):
        return False
    from testbed import events

    how = {"diff": f"the difference, {answer.get('lines', 0)} line(s)", "whole": f"whole ({answer.get('why')})",
           "deleted": "removed"}.get(answer.get("how", ""), "changed")
    took = time.monotonic() - start
    events.emit(ctx.lab, "Synced", f"node/{node}", f"{installer}: {what} {how} in {took:.3f}s", installer=installer,
                node=node, duration=round(took, 4), how=answer.get("how"), why=answer.get("why", ""))
    return True


class Prepare:
    """The pipeline's step before the pods: each enabled installer's `prepare`."""

    title = "Configuring add-ons"

    def run(self, ctx: Context) -> Change:
        from testbed.actions import Change

        change = Change()
        if ctx.as_last:  # the nodes hold this very plan: nothing to write (DNS renders every record to compare)
            return change
        for _, cls in sorted(registered().items()):
            installer = cls()
            if installer.enabled(ctx.plan.topology) and (done := installer.prepare(ctx)) is not None:
                change += done
        return change


def installers() -> list[Step]:
    return [Step(cls()) for _, cls in sorted(registered().items())]


def addons(topo: Topology, objects: list[Any]) -> list[dict[str, Any]]:
    return [m for _, cls in sorted(registered().items()) if (i := cls()).enabled(topo)
            for m in i.manifests(topo, objects)]
