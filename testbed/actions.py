"""A lab is brought up by a list of small actions run in order, as kind creates a cluster. Each action has one
entry point, run(ctx), and makes actual state match the plan, so running it again is safe (that is how `up`
on a running lab and `apply` re-sync)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from testbed import events, hosts, state
from testbed.plan.cluster import Plan
from testbed.runtime import agent
from testbed.runtime.machines import Machine, Provider


@dataclass
class Change:
    """What a sync changed, so status, benchmarks and progress can report it (containerlab's ApplyResult)."""

    added: int = 0
    removed: int = 0
    changed: int = 0

    def __add__(self, other: Change) -> Change:
        return Change(self.added + other.added, self.removed + other.removed, self.changed + other.changed)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def __str__(self) -> str:
        return f"{self.added} added, {self.removed} removed, {self.changed} changed"


@dataclass
class Context:
    plan: Plan
    provider: Provider
    say: Callable[[str], None] = print
    timings: dict[str, float] = field(default_factory=dict)
    changes: dict[str, Change] = field(default_factory=dict)
    previous: Plan | None = None  # the plan before this change, when the lab existed (to see what went away)
    notes: dict[str, Any] = field(default_factory=dict)  # what one step tells a later one of the same sync
    verify: bool = False  # read the kernel instead of trusting the agents' memory of their last sync (`up`)
    # previous is what the nodes hold (its sync finished): what renders the same from both plans is not sent again
    incremental: bool = False
    wiring: dict[str, dict[str, Any]] = field(default_factory=dict)  # pods the CNI plugins wired otherwise
    # the pods' processes this sync started (their names): they read what earlier steps wrote, so an installer
    # has no news for them
    started: set[str] = field(default_factory=set)
    # the machines whose containers this sync made: their kernels hold none of the rules an installer removes
    fresh: set[str] = field(default_factory=set)
    # each host's engine, by the topology's host names (`provider` is the first host's)
    providers: dict[str, Provider] = field(default_factory=dict)
    _machines: dict[str, Machine] = field(default_factory=dict)
    _pids: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.providers:
            self.providers = hosts.providers(self.plan, self.provider)

    @property
    def lab(self) -> str:
        return self.plan.lab

    def run_dir(self, machine: str) -> Path:
        return state.run_dir(self.lab) / machine

    def provider_of(self, machine: str) -> Provider:
        """The engine of the host the machine is on."""
        return self.providers.get(self.plan.machine(machine).host) or self.provider

    def remember(self, machines: dict[str, Machine]) -> None:
        """Machines a step already holds (the Nodes action, which made or found them): later steps need not look
        them up again."""
        self._machines.update(machines)

    def machine(self, name: str) -> Machine:
        if name not in self._machines:
            container = self.plan.machine(name).container
            found = self.provider_of(name).get(container)
            if found is None:
                raise RuntimeError(f"container {container} is missing")
            self._machines[name] = found
        return self._machines[name]

    @property
    def trusted(self) -> bool:
        """Whether the nodes hold what the previous plan renders."""
        return self.incremental and not self.verify and self.previous is not None

    @property
    def as_last(self) -> bool:
        """Whether this sync's plan is the last sync's (the same objects, the same readiness), held by the nodes:
        there is nothing to render, compare or send."""
        return self.trusted and self.previous is self.plan

    def unchanged(self, render: Callable[[Plan], object]) -> bool:
        """Whether render gives the same from the previous plan as from this one, when the nodes hold the previous
        one: a sync with nothing to change then sends nothing, as kube-proxy skips a sync with no change."""
        if not self.trusted:
            return False
        if self.as_last:
            return True
        try:
            return render(self.previous) == render(self.plan)
        except (KeyError, StopIteration):  # a node or pod the previous plan did not have
            return False

    def pid(self, machine: str) -> int:
        """The machine's init on its host (which the fabric opens its namespace by), asked once per run: the
        Nodes action comes first, and nothing after it restarts a machine."""
        if machine not in self._pids:
            self._pids[machine] = self.machine(machine).pid()
        return self._pids[machine]

    def netops(self, machine: str, op: str, /, **args: Any) -> Any:
        """A machine-level network operation (agent/netops.py), done by the machine's agent in its namespace."""
        return agent.call(self.run_dir(machine), "netops", name=op, args=args)




T = TypeVar("T")
R = TypeVar("R")


def each(fn: Callable[[T], R], items: Iterable[T], width: int = 16) -> list[R]:
    """fn over items at once: per-machine work is mostly waiting (on an agent, on dockerd), so it overlaps well
    even on two cores."""
    with ThreadPoolExecutor(max_workers=max(1, width)) as pool:
        return list(pool.map(fn, items))


class Action(Protocol):
    title: str

    def run(self, ctx: Context) -> Change | None: ...


def run_all(ctx: Context, actions: list[Action], progress: Callable[[str], object] | None = None,
            until: Callable[[Context], bool] | None = None) -> bool:
    """Each action in order; each leaves an event with its time and what it changed. With until, the run
    stops after the first action that makes it true; whether every action ran."""
    for action in actions:
        start = time.monotonic()
        if progress:
            progress(action.title)
        try:
            change = action.run(ctx)
        except Exception as err:
            events.emit(ctx.lab, "Failed", f"lab/{ctx.lab}", f"{action.title}: {type(err).__name__}: {err}",
                        kind="Warning", step=action.title, duration=round(time.monotonic() - start, 4))
            raise
        took = ctx.timings[action.title] = time.monotonic() - start
        if change is not None:
            ctx.changes[action.title] = change
        events.emit(ctx.lab, "Step", f"lab/{ctx.lab}", f"{action.title}" + (f": {change}" if change else "") +
                    f" in {took:.3f}s", step=action.title, duration=round(took, 4),
                    changes=vars(change) if change else {})
        if until is not None and until(ctx):
            return False
    return True
