"""The verbs of a lab's life: up, down, use, status, list, apply, delete, move, schema."""

from __future__ import annotations

import json
import time

import click
from rich.table import Table

from testbed import errors, state
from testbed.cli import remote
from testbed.cli.base import Steps, _lab, _run, current, err, json_option, lab_option, main, out, styled, use


@main.command()
@click.argument("topology", default="topologies/default.yaml", type=click.Path())
@click.option("--quiet", "-q", is_flag=True, help="No status table at the end.")
@click.option("--replace", is_flag=True, help="Re-sync a lab of the same name that runs from another file.")
@click.option("--name", help="The lab's name, instead of the file's `name`.")
def up(topology: str, quiet: bool, replace: bool, name: str | None) -> None:
    """Bring up (or re-sync) the lab described by TOPOLOGY (default: topologies/default.yaml in the current
    folder). The lab becomes the current lab, as kind makes a new cluster the current context.

    \b
    Examples:
      testbed up topologies/default.yaml
      testbed up my-topology.yaml --name ci-$GITHUB_RUN_ID -q
    """
    from testbed import lab

    start = time.monotonic()
    ctx = _run(lambda s: lab.up(topology, s.say, s, replace=replace, name=name))
    use(ctx.lab)
    err.print(styled(("lab ", "bold"), (ctx.lab, "bold"), f" is up in {time.monotonic() - start:.1f}s (the "
                                                          "current lab)"))
    if not quiet:
        from testbed.cli import show
        from testbed.observe.status import collect

        show.status(out, collect(ctx.lab))


@main.command()
@click.argument("name", required=False, envvar="TESTBED_LAB")
@click.option("--all", "everything", is_flag=True, help="Remove every lab on this machine.")
def down(name: str | None, everything: bool) -> None:
    """Remove a lab (NAME, or the current lab, or the only lab up) and everything it made. Removing a lab
    that is gone is not an error.

    \b
    Examples:
      testbed down default
      testbed down --all
    """
    from testbed import lab

    if everything:
        names = sorted(lab.known_labs())
    elif name is not None or state.names():
        names = [_lab(name, ask="name one (`testbed down NAME`), or remove every lab with `testbed down --all`")]
    else:
        names = []
    if not names:
        lab.tidy()
        err.print("no lab is up: nothing to remove")
    for n in names:
        found = lab.down(n)
        if current() == n:
            use(None)
        err.print(f"lab {n}: {'removed' if found else 'nothing to remove'}")


@main.command(name="use")
@click.argument("name", required=False)
@click.option("--clear", is_flag=True, help="Forget the current lab.")
def use_lab(name: str | None, clear: bool) -> None:
    """Make NAME the current lab: the one every verb acts on when neither --lab nor $TESTBED_LAB names one
    (kept per user, as kubectl keeps a current context). Without NAME, print the current lab.

    \b
    Examples:
      testbed use bgp
      testbed use            # which lab is current
      testbed use --clear
    """
    if clear:
        use(None)
        return
    if name is None:
        chosen = current()
        if chosen is None:
            raise errors.NotFound("no current lab (`testbed use NAME` chooses one)")
        click.echo(chosen)
        return
    state.check_name(name)
    if state.load(name) is None:
        raise errors.NotFound(f"no lab named {name!r} (labs: {', '.join(state.names()) or 'none'})")
    use(name)
    err.print(f"lab {name} is the current lab")


@main.command()
@lab_option
@json_option
def status(lab_name: str | None, as_json: bool) -> None:
    """Nodes, pods (IPs, node, readiness) and links of a lab, observed; `degraded` with its reasons when the
    lab differs from its plan.

    \b
    Examples:
      testbed status
      testbed status --lab bgp --json | jq '.pods[] | {name, ips}'
    """
    from testbed.cli import show
    from testbed.observe.status import collect

    data = collect(_lab(lab_name))
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        show.status(out, data)


@main.command(name="list")
@json_option
def list_labs(as_json: bool) -> None:
    """The labs on this machine (* marks the current lab).

    \b
    Examples:
      testbed list
      testbed list --json
    """
    chosen = current()
    rows = [{"name": n, "phase": s.phase, "topology": s.topology_file, "underlay": s.underlay,
             "current": n == chosen} for n in state.names() if (s := state.load(n))]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("NAME", "PHASE", "UNDERLAY", "TOPOLOGY")
    for r in rows:
        table.add_row(f"{r['name']} *" if r["current"] else r["name"], r["phase"], r["underlay"], r["topology"])
    out.print(table)


@main.command()
@lab_option
@click.option("-f", "--filename", required=True, type=click.Path(), help="Manifest file (multi-document).")
def apply(lab_name: str | None, filename: str) -> None:
    """Create or update the objects in a manifest file on a running lab.

    \b
    Examples:
      testbed apply -f my-policy.yaml
      testbed apply --lab bgp -f topologies/manifests/web.yaml
    """
    name = _lab(lab_name)

    def work(steps: Steps) -> None:
        if remote.ask(name, "apply", filename, steps) is None:
            from testbed import lab

            lab.apply(name, filename, steps.say, steps)

    _run(work)
    err.print(f"applied {filename} to {name}")


@main.command()
@lab_option
@click.option("-f", "--filename", required=True, type=click.Path(), help="Manifest file (multi-document).")
def delete(lab_name: str | None, filename: str) -> None:
    """Delete the objects a manifest file names (by kind, namespace and name, as kubectl does) from a running
    lab; a Namespace takes its objects with it. Exit 3 when some were not there (the rest are deleted).

    \b
    Example:
      testbed delete -f my-policy.yaml
    """
    name = _lab(lab_name)

    def work(steps: Steps) -> list[str]:
        done = remote.ask(name, "delete", filename, steps)
        if done is not None:
            return list(done["missing"])
        from testbed import lab

        return lab.delete(name, filename, steps.say, steps)

    missing = _run(work)
    if missing:
        raise errors.NotFound(f"not found in lab {name} (the rest was deleted): {', '.join(missing)}")
    err.print(f"deleted the objects of {filename} from {name}")


@main.command()
@lab_option
@click.argument("pod")
@click.option("--to", "to", required=True, help="The node the pod moves to.")
def move(lab_name: str | None, pod: str, to: str) -> None:
    """Recreate a pod on another node with the same IPs (network: bgp); refused (exit 2) in other modes, or
    when the pod's nodeName or nodeSelector does not allow the node.

    \b
    Example:
      testbed move --lab bgp default/web-xxxxx --to node3
    """
    from testbed import lab

    name = _lab(lab_name)
    start = time.monotonic()
    _run(lambda s: lab.move(name, pod, to, s.say, s))
    err.print(f"moved {pod} to {to} in {time.monotonic() - start:.1f}s")


@main.command()
def schema() -> None:
    """Print the topology file's JSON schema (editors with the YAML language server read it).

    \b
    Example:
      testbed schema > topology.schema.json
    """
    from testbed.model.topology import json_schema
    from testbed.network.registry import modes

    click.echo(json.dumps(json_schema(sorted(modes())), indent=2))

