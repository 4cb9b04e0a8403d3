"""A lab is brought up by a list of small actions run in order, as kind creates a cluster. Each action has one
entry point, run(ctx), and makes actual state match the plan, so running it again is safe (that is how `up`
on a running lab and `apply` re-sync)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import docker
from docker.models.containers import Container

from testbed import state
from testbed.plan.cluster import Plan
from testbed.runtime import docker as rt


@dataclass
class Context:
    plan: Plan
    client: docker.DockerClient
    say: Callable[[str], None] = print
    timings: dict[str, float] = field(default_factory=dict)
    _containers: dict[str, Container] = field(default_factory=dict)
    _pids: dict[str, int] = field(default_factory=dict)

    @property
    def lab(self) -> str:
        return self.plan.lab

    def run_dir(self, node: str) -> Path:
        return state.run_dir(self.lab) / node

    def container(self, node: str) -> Container:
        if node not in self._containers:
            c = rt.get(self.client, self.plan.node(node).container)
            if c is None:
                raise RuntimeError(f"node container {self.plan.node(node).container} is missing")
            self._containers[node] = c
        return self._containers[node]

    def pid(self, node: str) -> int:
        """Asked once per node per run: the Nodes action comes first, and nothing after it restarts a node."""
        if node not in self._pids:
            self._pids[node] = rt.pid(self.container(node))
        return self._pids[node]


class Action(Protocol):
    title: str

    def run(self, ctx: Context) -> None: ...


def run_all(ctx: Context, actions: list[Action], progress: Callable[[str], object] | None = None) -> None:
    for action in actions:
        start = time.monotonic()
        if progress:
            progress(action.title)
        action.run(ctx)
        ctx.timings[action.title] = time.monotonic() - start
