"""The verbs that read the network: `routes`, `services`, `probe` (one connection, or `--matrix`) and
`policy explain`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from testbed.cli.base import _lab, err, json_option, lab_option, main, out, styled
from testbed.errors import InvalidInput, Problem


@main.command()
@lab_option
@click.argument("machine", required=False)
@json_option
def routes(lab_name: str | None, machine: str | None, as_json: bool) -> None:
    """The routing tables that matter (nodes and router, or one MACHINE), with who installed each route.

    \b
    Examples:
      testbed routes router
      testbed routes --json
    """
    from testbed.cli import show
    from testbed.observe.status import routes as observed

    data = observed(_lab(lab_name), machine)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        show.routes(out, data)


@main.command()
@lab_option
@json_option
def services(lab_name: str | None, as_json: bool) -> None:
    """Services: type, cluster IPs, ports and node ports, LoadBalancer IPs, endpoints.

    \b
    Examples:
      testbed services
      testbed services --json
    """
    from testbed import lab
    from testbed.cli import show
    from testbed.observe.status import services as planned

    _, plan = lab.current_plan(_lab(lab_name))
    data = planned(plan)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        show.services(out, data)


def _csv(value: str, kind: type = str) -> list:  # type: ignore[type-arg]
    try:
        return [kind(x.strip()) for x in value.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list") from None


@main.command(name="probe")
@lab_option
@click.argument("source", required=False)
@click.argument("target", required=False)
@click.option("--protocol", type=click.Choice(["tcp", "udp", "sctp"]), default="tcp", show_default=True)
@click.option("--timeout", type=float, default=2.0, show_default=True, help="Seconds before giving up.")
@click.option("--matrix", is_flag=True, help="Probe every pair among the chosen pods (see --namespace, --pod).")
@click.option("-n", "--namespace", "namespaces", multiple=True, help="Matrix: the pods of this namespace.")
@click.option("--pod", "pods", multiple=True, help="Matrix: this pod (NS/POD); repeat for more.")
@click.option("--ports", default="80", show_default=True, help="Matrix: comma-separated ports.")
@click.option("--protocols", default="tcp", show_default=True, help="Matrix: tcp, udp, sctp, comma-separated.")
@click.option("--via", type=click.Choice(["pod", "service", "dns"]), default="pod", show_default=True,
              help="Matrix: dial the pod IP, its Service's cluster IP, or the Service's DNS name.")
@click.option("--expect", type=click.Path(dir_okay=False), help="Matrix: an expected matrix to compare with.")
@json_option
def probe_cmd(lab_name: str | None, source: str | None, target: str | None, protocol: str, timeout: float,
              matrix: bool, namespaces: tuple[str, ...], pods: tuple[str, ...], ports: str, protocols: str,
              via: str, expect: str | None, as_json: bool) -> None:
    """One connection from SOURCE (NS/POD, a node, router, an external host) to TARGET (IP:PORT,
    svc/NS/NAME:PORT, NS/POD:PORT or NAME:PORT): connected, refused, timeout, or error (the connection could
    not be tried: a name that does not resolve, no route; the reason is printed). Exit 0 when it connected, 1
    when not. With --matrix, every pair among the chosen pods, as truth tables (rows from, columns to; `.`
    allowed, `X` blocked, `*` where the datapath and the NetworkPolicy model disagree); exit 1 on any
    disagreement, or any difference from --expect.

    \b
    Examples:
      testbed probe default/client svc/default/web:80
      testbed probe ext2 198.51.100.1:80
      testbed probe default/client 10.96.0.11:53 --protocol udp --json
      testbed probe --matrix -n x -n y -n z --ports 80,81 --protocols tcp,udp
      testbed probe --matrix -n x --via service --expect expected.txt
    """
    if matrix:
        _matrix(_lab(lab_name), list(namespaces), list(pods), _csv(ports, int), _csv(protocols), via, expect,
                as_json)
        return
    if not source or not target:
        raise click.UsageError("probe needs SOURCE and TARGET, or --matrix")
    from testbed import lab
    from testbed.observe.probe import probe

    result = probe(lab.current_plan(_lab(lab_name))[1], source, target, protocol, timeout)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        seen = f"  answered by {result['pod']}, which saw {result['client']}" if result.get("pod") else ""
        why = f" ({result['error']})" if result.get("error") else ""
        out.print(styled(f"{source} → {result.get('address', result['target'])}:{result['port']}/{protocol}: ",
                         (result["result"], "green" if result["result"] == "connected" else "red"),
                         f"{why} in {result.get('ms', 0)} ms{seen}"))
    sys.exit(0 if result["result"] == "connected" else 1)


def _matrix(name: str, namespaces: list[str], pods: list[str], ports: list[int], protocols: list[str], via: str,
            expect: str | None, as_json: bool) -> None:
    from testbed.observe import matrix

    bad = [p for p in protocols if p not in ("tcp", "udp", "sctp")]
    if bad:
        raise InvalidInput([Problem("testbed probe", "--protocols", f"unknown protocol {bad[0]!r} (tcp, udp, "
                                                                    "sctp)")])
    wanted = None
    if expect:
        path = Path(expect)
        if not path.is_file():
            raise InvalidInput([Problem(expect, "--expect", "no such file")])
        wanted = matrix.parse_expect(path.read_text(), expect)
    cells = matrix.run(name, namespaces, pods, ports, protocols, via)
    diffs = matrix.differences(cells, wanted) if wanted is not None else []
    disagree = [c for c in cells if not c.agrees]
    if as_json:
        click.echo(json.dumps({"cells": matrix.as_json(cells), "differences": diffs}, indent=2))
    else:
        click.echo(matrix.tables(cells), nl=False)
        if disagree:
            err.print(f"{len(disagree)} cell(s) (marked *) disagree with the NetworkPolicy model")
        for d in diffs:
            err.print(f"differs from {expect}: {d}")
    sys.exit(1 if disagree or diffs else 0)


@main.group()
def policy() -> None:
    """NetworkPolicy: what the model says about a flow.

    \b
    Example:
      testbed policy explain x/a y/b:80
    """


@policy.command()
@lab_option
@click.argument("source")
@click.argument("target")
@json_option
def explain(lab_name: str | None, source: str, target: str, as_json: bool) -> None:
    """Which policies select SOURCE (NS/POD) and the pod at TARGET (NS/POD:PORT[/PROTO], or IP:PORT[/PROTO]),
    which rule admits the flow or that none does, for egress and ingress. Exit 0 when allowed, 1 when not.

    \b
    Examples:
      testbed policy explain x/a y/b:80
      testbed policy explain x/a x/c:81/udp --json
    """
    from testbed.observe.explain import explain as run

    verdict = run(_lab(lab_name), source, target)
    if as_json:
        click.echo(json.dumps(verdict, indent=2))
    else:
        out.print(styled(f"{verdict['from']} → {verdict['to']}:{verdict['port']}/{verdict['protocol']}: ",
                         ("allowed", "green") if verdict["allowed"] else ("denied", "red")))
        for side in (verdict["egress"], verdict["ingress"]):
            chosen = ", ".join(side["policies"]) or "none"
            out.print(f"  {side['direction']:<7} {'allowed' if side['allowed'] else 'denied':<8} "
                      f"policies: {chosen}; {side['by'] or side['reason']}", soft_wrap=True)
    sys.exit(0 if verdict["allowed"] else 1)
