"""What a registered module answers when asked whether the lab is as planned: findings (ok, warn or fail, each
with its subject, evidence and a hint), from an Observation that reads the machines once and shares it.

Every module (kinds, the pod network modes, the installers) checks what it made, against the plan: `status`
asks for the quick checks (kernel state, daemons), `diagnose` also for the deep ones (rules compared with the
kernel's, real packets). Nothing outside a module names its internals."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from testbed import hosts, state
from testbed.actions import each
from testbed.errors import TestbedError
from testbed.plan.cluster import Plan
from testbed.runtime import agent
from testbed.runtime.machines import Machine, Provider, engine_errors

AGENT_WAIT = 3.0  # seconds an agent gets to answer a check: a hung one is one finding, not a stall


@dataclass
class Finding:
    check: str  # what was checked: "vxlan peers", "kube-proxy rules"
    status: str  # ok | warn | fail
    subject: str = ""  # where: a node, a pod, a Service
    message: str = ""
    evidence: list[str] = field(default_factory=list)
    hint: str = ""
    module: str = ""  # the registered module that found it (set by the caller)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def ok(check: str, subject: str = "", message: str = "", evidence: list[str] | None = None) -> Finding:
    return Finding(check, "ok", subject, message, evidence or [])


def fail(check: str, subject: str, message: str, evidence: list[str] | None = None, hint: str = "",
         status: str = "fail") -> Finding:
    return Finding(check, status, subject, message, evidence or [], hint)


HEAL = "`testbed up` heals it"


def compared(check: str, subject: str, what: str, result: dict[str, Any] | None) -> Finding | None:
    """A finding from the agent's comparison of the kernel's rules with the meant ones (agent/kernel.py);
    None when the agent did not answer (its machine's check says so)."""
    if result is None:
        return None
    if result["match"]:
        return ok(check, subject, f"{subject}: {what} as planned")
    if not result["present"]:
        return fail(check, subject, f"{subject}: {what} is missing", result["missing"], HEAL)
    if result["reordered"]:
        return fail(check, subject, f"{subject}: {what} holds the planned rules in another order", hint=HEAL)
    evidence = [f"missing: {line}" for line in result["missing"]] + [f"extra: {line}" for line in result["extra"]]
    return fail(check, subject, f"{subject}: {what} differs from the plan ({result['missingCount']} missing, "
                                f"{result['extraCount']} extra)", evidence, HEAL)


class Observation:
    """The lab as the checks read it: its plan, its machines' containers, and its agents' answers, each asked
    at most once per question, in parallel, with a bounded wait."""

    def __init__(self, plan: Plan, provider: Provider | None = None, wait: float = AGENT_WAIT) -> None:
        self.plan, self.wait = plan, wait
        self.provider = provider or Provider()
        self.run_dir = state.run_dir(plan.lab)
        self.containers: dict[str, Machine] = {}
        self.unreachable: dict[str, str] = {}  # host → why its engine did not answer
        self.homes = homes = {m.name: m.host for m in plan.machines()}
        for host, engine in hosts.providers(plan, self.provider).items():  # each machine as its host's engine has it
            try:
                found = engine.machines(plan.lab)
            except (TestbedError, OSError, *engine_errors()) as err:
                if host == plan.fabric.host:
                    raise  # this machine's own engine: nothing can be observed
                self.unreachable[host] = f"{type(err).__name__}: {err}"
                continue
            for m in found:
                if homes.get(m.name, host) == host:
                    self.containers[m.name] = m
        self._answers: dict[tuple[str, str, str], Any] = {}
        self.failures: dict[str, str] = {}  # machine → why its agent did not answer
        self._lock = threading.Lock()
        self.started = time.monotonic()

    def state(self, machine: str) -> str:
        m = self.containers.get(machine)
        if m is None and (host := self.homes.get(machine, "")) in self.unreachable:
            return f"unreachable (host {host})"
        return m.state if m else "missing"

    def running(self, machine: str) -> bool:
        return self.state(machine) == "running"

    def call(self, machine: str, op: str, cache: bool = True, **args: Any) -> Any | None:
        """The agent's answer, or None when the machine is down or its agent does not answer in time (why is
        kept in failures)."""
        key = (machine, op, json.dumps(args, sort_keys=True))
        if cache and key in self._answers:
            return self._answers[key]
        answer = None
        if self.running(machine) and machine not in self.failures:
            try:
                answer = agent.call(self.run_dir / machine, op, timeout=self.wait, **args)
            except (OSError, agent.AgentError) as err:
                with self._lock:
                    self.failures[machine] = f"{type(err).__name__}: {err}"
        if cache:
            with self._lock:
                self._answers[key] = answer
        return answer

    def ask_all(self, op: str, machines: Iterable[str]) -> dict[str, Any]:
        """One question to several agents at once."""
        names = list(machines)
        return dict(zip(names, each(lambda m: self.call(m, op), names), strict=True))

    def machine_dir(self, machine: str) -> Path:
        return self.run_dir / machine


class Checked(Protocol):
    """A registered module that checks what it made."""

    name: str

    def check(self, obs: Observation, deep: bool) -> list[Finding]: ...


def run(modules: Iterable[Checked], obs: Observation, deep: bool) -> list[Finding]:
    """Every module's findings, in the modules' order, each tagged with its module; a module whose check
    fails is a finding too, not a crash."""
    out: list[Finding] = []
    for module in modules:
        try:
            found = module.check(obs, deep)
        except Exception as err:  # one broken check must not hide the others' findings
            found = [fail(f"{module.name} check", "", f"the check itself failed: {type(err).__name__}: {err}")]
        for f in found:
            f.module = f.module or module.name
        out += found
    return out
