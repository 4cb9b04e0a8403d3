"""The verbs that work inside pods and machines: exec and logs."""

from __future__ import annotations

import os
import sys

import click

from testbed import errors, state
from testbed.cli.base import _lab, lab_option, main


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
    from testbed.runtime import podexec

    _, plan = lab.current_plan(_lab(lab_name))
    if interactive or tty:
        sys.exit(podexec.attach(plan, pod, list(command)))
    sys.exit(podexec.run(plan, pod, list(command), stream=True).exit_code)


@main.command()
@lab_option
@click.argument("pod")
@click.option("-c", "--container", help="The container (default: the first that runs a command).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing as the process writes.")
@click.option("--tail", type=int, default=-1, help="Only the last N lines.")
def logs(lab_name: str | None, pod: str, container: str | None, follow: bool, tail: int) -> None:
    """The output of a pod's own process (its command and args), across restarts.

    \b
    Examples:
      testbed logs kube-system/kube-dns-<hash>-<suffix>      # see `testbed status` for the names
      testbed logs --lab bgp kube-system/$(testbed status --lab bgp --json | jq -r \\
        '.pods[] | select(.namespace == "kube-system") | .name' | head -1) --tail 20
    """
    from testbed import lab
    from testbed.agent.processes import process_name
    from testbed.runtime import podexec

    name = _lab(lab_name)
    _, p = podexec.find(lab.current_plan(name)[1], pod)
    if not p.processes:
        raise errors.NotFound(f"pod {p.key} runs no command of its own (it serves netexec answers)")
    chosen = container or next(iter(p.processes))
    if chosen not in p.processes:
        raise errors.NotFound(f"pod {p.key} has no container {chosen!r} with a command "
                              f"({', '.join(p.processes)})")
    path = state.run_dir(name) / p.node / "logs" / f"{process_name(p.netns, chosen)}.log"
    if follow:
        os.execvp("tail", ["tail", "-n", str(tail) if tail >= 0 else "+1", "-F", str(path)])
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    click.echo("\n".join(lines[-tail:] if tail >= 0 else lines))
