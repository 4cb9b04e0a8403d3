"""The `testbed` command: the lab verbs here, with the others registered on the same group by importing their
modules (cli_probe: probe and policy; cli_host: images, doctor, version).

Exit codes: 0 ok, 1 failed while acting, 2 bad input (nothing created), 3 not found, 4 environment problem.
"""

from __future__ import annotations

import json
import os
import sys
import time

import click
from rich.table import Table

from testbed import cli_host, cli_probe, errors, lab, state
from testbed.cli_base import _lab, _run, err, lab_option, main, out

__all__ = ["cli_host", "cli_probe", "main"]


@main.command()
@click.argument("topology", default="topologies/default.yaml", type=click.Path())
@click.option("--quiet", "-q", is_flag=True, help="No status table at the end.")
@click.option("--replace", is_flag=True, help="Re-sync a lab of the same name that runs from another file.")
@click.option("--name", help="The lab's name, instead of the file's `name`.")
def up(topology: str, quiet: bool, replace: bool, name: str | None) -> None:
    """Bring up (or re-sync) the lab described by TOPOLOGY.

    \b
    Examples:
      testbed up topologies/default.yaml
      testbed up my-topology.yaml --name ci-$GITHUB_RUN_ID
    """
    start = time.monotonic()
    ctx = _run(lambda s: lab.up(topology, s.say, s, replace=replace, name=name))
    err.print(f"lab [bold]{ctx.lab}[/] is up in {time.monotonic() - start:.1f}s", highlight=False)
    if not quiet:
        from testbed import show
        from testbed.status import collect

        show.status(out, collect(ctx.lab))


@main.command()
@click.argument("name", required=False, envvar="TESTBED_LAB")
@click.option("--all", "everything", is_flag=True, help="Remove every lab on this machine.")
def down(name: str | None, everything: bool) -> None:
    """Remove a lab and everything it made. Removing a lab that is gone is not an error.

    \b
    Example:
      testbed down default
    """
    names = sorted(lab.known_labs()) if everything else [_lab(name)] if name is not None or state.names() else []
    if not names:
        lab.tidy()
        err.print("no lab is up: nothing to remove", highlight=False)
    for n in names:
        found = lab.down(n)
        err.print(f"lab {n}: {'removed' if found else 'nothing to remove'}", highlight=False)


@main.command()
@lab_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(lab_name: str | None, as_json: bool) -> None:
    """Nodes, pods (IPs, node, readiness) and links of a lab."""
    from testbed import show
    from testbed.status import collect

    data = collect(_lab(lab_name))
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        show.status(out, data)


@main.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_labs(as_json: bool) -> None:
    """The labs on this machine."""
    rows = [{"name": n, "phase": s.phase, "topology": s.topology_file, "underlay": s.underlay}
            for n in state.names() if (s := state.load(n))]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("NAME", "PHASE", "UNDERLAY", "TOPOLOGY")
    for r in rows:
        table.add_row(r["name"], r["phase"], r["underlay"], r["topology"])
    out.print(table)


@main.command()
@lab_option
@click.option("-f", "--filename", required=True, type=click.Path(), help="Manifest file (multi-document).")
def apply(lab_name: str | None, filename: str) -> None:
    """Create or update the objects in a manifest file on a running lab."""
    name = _lab(lab_name)
    _run(lambda s: lab.apply(name, filename, s.say, s))
    err.print(f"applied {filename} to {name}", highlight=False)


@main.command()
@lab_option
@click.option("-f", "--filename", required=True, type=click.Path(), help="Manifest file (multi-document).")
def delete(lab_name: str | None, filename: str) -> None:
    """Delete the objects in a manifest file from a running lab."""
    name = _lab(lab_name)
    missing = _run(lambda s: lab.delete(name, filename, s.say, s))
    if missing:
        raise errors.NotFound(f"not found (the rest was deleted): {', '.join(missing)}")
    err.print(f"deleted the objects of {filename} from {name}", highlight=False)


@main.command()
@lab_option
@click.argument("pod")
@click.option("--to", "to", required=True, help="The node the pod moves to.")
def move(lab_name: str | None, pod: str, to: str) -> None:
    """Recreate a pod on another node with the same IPs (network: bgp).

    \b
    Example:
      testbed move default/client --to node2
    """
    name = _lab(lab_name)
    start = time.monotonic()
    _run(lambda s: lab.move(name, pod, to, s.say, s))
    err.print(f"moved {pod} to {to} in {time.monotonic() - start:.1f}s", highlight=False)


@main.command()
@lab_option
@click.argument("machine", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def routes(lab_name: str | None, machine: str | None, as_json: bool) -> None:
    """The routing tables that matter (nodes and router, or one MACHINE), with who installed each route.

    \b
    Example:
      testbed routes router
    """
    from testbed import show
    from testbed.status import routes as observed

    data = observed(_lab(lab_name), machine)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        show.routes(out, data)


@main.command()
@lab_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def services(lab_name: str | None, as_json: bool) -> None:
    """Services: type, cluster IPs, ports and node ports, LoadBalancer IPs, endpoints.

    \b
    Example:
      testbed services --json
    """
    from testbed import show
    from testbed.status import services as planned

    _, plan = lab.current_plan(_lab(lab_name))
    data = planned(plan)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        show.services(out, data)


@main.command(name="exec", context_settings={"ignore_unknown_options": True})
@lab_option
@click.option("-i", "--interactive", is_flag=True, help="Attach this terminal (for shells); with -t too.")
@click.option("-t", "--tty", is_flag=True, help="Same as -i: the command gets this terminal.")
@click.argument("pod")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(lab_name: str | None, interactive: bool, tty: bool, pod: str, command: tuple[str, ...]) -> None:
    """Run COMMAND in a pod's network namespace, or on a machine (a node, router, an external host).

    \b
    Examples:
      testbed exec default/client -- curl -s http://203.0.113.11/clientip
      testbed exec router -- birdc -s /run/testbed/bird.ctl show protocols
    """
    from testbed import podexec

    name = _lab(lab_name)
    if interactive or tty:
        podexec.attach(name, pod, list(command))  # replaces this process
    sys.exit(podexec.run(name, pod, list(command), stream=True).exit_code)


@main.command()
@lab_option
@click.argument("pod")
@click.option("-c", "--container", help="The container (default: the first that runs a command).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing as the process writes.")
@click.option("--tail", type=int, default=-1, help="Only the last N lines.")
def logs(lab_name: str | None, pod: str, container: str | None, follow: bool, tail: int) -> None:
    """The output of a pod's own process (its command and args), across restarts.

    \b
    Example:
      testbed logs default/iperf -f
    """
    from testbed import podexec
    from testbed.agent.processes import process_name

    name = _lab(lab_name)
    _, p = podexec.find(name, pod)
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


@main.command()
def schema() -> None:
    """Print the topology file's JSON schema."""
    from testbed.topology import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


if __name__ == "__main__":
    main()
