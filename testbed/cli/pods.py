"""The verbs that work inside pods and machines: exec and logs."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from testbed import errors, state
from testbed.agent.processes import process_name
from testbed.cli.base import _lab, lab_option, main
from testbed.runtime import podexec


@main.command(name="exec", context_settings={"ignore_unknown_options": True})
@lab_option
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin open, on a terminal of the pod's (with -t).")
@click.option("-t", "--tty", is_flag=True, help="Give the command a pseudo-terminal, as `kubectl exec -it`.")
@click.argument("pod")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(lab_name: str | None, interactive: bool, tty: bool, pod: str, command: tuple[str, ...]) -> None:
    """Run COMMAND in a pod's network namespace (NS/POD), or on a machine (a node, router, an external host).
    Exits with the command's own code.

    \b
    Examples:
      testbed exec default/client -- curl -s http://203.0.113.11/clientip
      testbed exec -it default/client -- bash
      testbed exec router -- birdc -s /run/testbed/bird.ctl show protocols
    """
    from testbed import lab

    _, plan = lab.current_plan(_lab(lab_name))
    if interactive or tty:
        sys.exit(podexec.attach(plan, pod, list(command)))
    sys.exit(podexec.run(plan, pod, list(command), stream=True).exit_code)


def _components(name: str, plan: Any) -> list[str]:
    """Every log there is: pods' processes, each machine's agent and daemons, the lab's controller."""
    out = [p.key for p in plan.pods if p.processes]
    run = state.run_dir(name)
    for m in plan.machines():
        out.append(f"{m.name}/agent")
        logs = run / m.name / "logs"
        pods = {process_name(p.netns, c) for p in plan.pods if p.node == m.name for c in p.processes}
        out += [f"{m.name}/{f.stem}" for f in sorted(logs.glob("*.log")) if f.stem not in pods]
    return [*out, "controller"]


def _file_of(name: str, plan: Any, target: str, container: str | None) -> tuple[Path | None, str | None]:
    """The log file of a pod's process, a machine's daemon or the controller; or the machine whose agent's
    output (kept by the engine) is asked for."""
    run = state.run_dir(name)
    if target == "controller":
        return run / "controller.log", None
    machines = {m.name for m in plan.machines()}
    head, _, tail = target.partition("/")
    if head in machines and tail in ("", "agent"):
        return None, head
    if head in machines:
        daemon = {"knot": "knotd", "bind": "named"}.get(tail, tail)
        path = run / head / "logs" / f"{daemon}.log"
        if path.exists():
            return path, None
        raise errors.NotFound(f"no log {target} in lab {name} (logs: {', '.join(_components(name, plan))})")
    try:
        _, p = podexec.find(plan, target)
    except errors.NotFound:
        raise errors.NotFound(f"no pod, machine or component {target} in lab {name} (logs: "
                              f"{', '.join(_components(name, plan))})") from None
    if not p.processes:
        raise errors.NotFound(f"pod {p.key} runs no command of its own (it serves netexec answers); logs: "
                              f"{', '.join(_components(name, plan))}")
    chosen = container or next(iter(p.processes))
    if chosen not in p.processes:
        raise errors.NotFound(f"pod {p.key} has no container {chosen!r} with a command ({', '.join(p.processes)})")
    return run / p.node / "logs" / f"{process_name(p.netns, chosen)}.log", None


@main.command()
@lab_option
@click.argument("target")
@click.option("-c", "--container", help="A pod's container (default: the first that runs a command).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing as it writes.")
@click.option("--tail", type=int, default=-1, help="Only the last N lines.")
def logs(lab_name: str | None, target: str, container: str | None, follow: bool, tail: int) -> None:
    """The output of a pod's own process (NS/POD), across restarts; of a machine's agent (node1, node1/agent);
    of a machine's daemon (node1/bird, router/bird, ext1/knot); or of the lab's controller. An unknown TARGET
    lists what there is.

    \b
    Examples:
      testbed logs node1/agent --tail 20
      testbed logs --lab bgp router/bird -f
      testbed logs ext1/knot
      testbed logs kube-system/kube-dns-<hash>-<suffix>      # the DNS pods' BIND (names in `testbed status`)
      testbed logs controller
    """
    from testbed import lab

    name = _lab(lab_name)
    _, plan = lab.current_plan(name)
    path, machine = _file_of(name, plan, target, container)
    if machine is not None:
        found = podexec.running(plan.machine(machine).container, None)
        for chunk in found.logs(tail, follow):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
        return
    assert path is not None
    if follow:
        os.execvp("tail", ["tail", "-n", str(tail) if tail >= 0 else "+1", "-F", str(path)])
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    click.echo("\n".join(lines[-tail:] if tail >= 0 else lines))
