"""The verbs that look inside a lab: diagnose, events, describe, graph and ui."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from testbed.cli.base import _lab, err, json_option, lab_option, main, out, styled

MARKS = {"ok": ("PASS", "green"), "warn": ("WARN", "yellow"), "fail": ("FAIL", "red")}


def _print_findings(findings: list[dict[str, Any]], verbose: bool) -> None:
    """One line per check that passed everywhere (each finding with -v); every warning and failure with its
    evidence and its hint."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for f in findings:  # by check, in the order the checks first speak
        groups.setdefault((f["module"], f["check"]), []).append(f)
    for (module, check), items in groups.items():
        good = [f for f in items if f["status"] == "ok"]
        for f in items if verbose else [f for f in items if f["status"] != "ok"]:
            mark, style = MARKS[f["status"]]
            out.print(styled((mark, style), f"  {module}/{check}: {f['message']}"))
            for line in f["evidence"][:8]:
                out.print(f"        {line}")
            if len(f["evidence"]) > 8:
                out.print(f"        ... and {len(f['evidence']) - 8} more (--json has them all)")
            if f["hint"]:
                out.print(styled(("        hint: ", "dim"), f["hint"]))
        if good and not verbose:
            subjects = ", ".join(f["subject"] for f in good if f["subject"])
            subjects = subjects if len(subjects) <= 70 else subjects[:67] + "..."
            out.print(styled(("PASS", "green"), f"  {module}/{check}: {len(good)} ok" +
                             (f" ({subjects})" if subjects else "")))


@main.command()
@lab_option
@json_option
@click.option("-v", "--verbose", is_flag=True, help="Every finding, not only the ones that did not pass.")
def diagnose(lab_name: str | None, as_json: bool, verbose: bool) -> None:
    """Check the whole lab, in the order of the troubleshooting checklist: machines and agents, links, pods,
    the pod network (with real traffic between the nodes), cluster DNS, egress NAT, kube-proxy's and the
    policies' rules read back from every kernel, Services without endpoints. PASS, WARN or FAIL, each with its
    evidence and a hint. Exit 0 when nothing failed, 1 otherwise.

    \b
    Examples:
      testbed diagnose
      testbed diagnose --lab bgp --json | jq '.findings[] | select(.status != "ok")'
    """
    from testbed.observe.diagnose import diagnose as run

    report = run(_lab(lab_name))
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        _print_findings(report["findings"], verbose)
        c = report["counts"]
        err.print(styled((f"{c['fail']} failed", "red" if c["fail"] else "green"),
                         f", {c['warn']} warning(s), {c['ok']} passed in {report['seconds']} s"))
    sys.exit(0 if report["ok"] else 1)


def _event_line(e: dict[str, Any]) -> Any:
    style = "yellow" if e.get("type") == "Warning" else ""
    return styled(e["time"][11:23] + "  ", (f"{e.get('type', ''):<8}", style), f"{e.get('reason', ''):<10} ",
                  (f"{e.get('object', ''):<28}", "bold"), f" {e.get('message', '')}")


@main.command()
@lab_option
@json_option
@click.option("-f", "--follow", is_flag=True, help="Keep printing events as they come.")
@click.option("--tail", type=int, default=50, show_default=True, help="The last N events (-1: all).")
def events(lab_name: str | None, as_json: bool, follow: bool, tail: int) -> None:
    """What testbed did to the lab, as `kubectl get events`: each step of up, apply and delete with its time,
    each installer's sync on each node (a partial sync's elements, a whole reload and why), readiness
    changes and the controller's syncs, errors. Kept in a bounded, rotated log of the lab's.

    \b
    Examples:
      testbed events
      testbed events -f                                # and what comes next
      testbed events --json --tail -1 | jq 'select(.reason == "Synced")'
    """
    from testbed import events as log

    name = _lab(lab_name)
    kept = log.read(name)
    shown = kept if tail < 0 else kept[-tail:] if tail else []
    for e in shown:
        click.echo(json.dumps(e)) if as_json else out.print(_event_line(e))
    if follow:
        for e in log.follow(name):
            click.echo(json.dumps(e)) if as_json else out.print(_event_line(e))


def _flat(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(_flat, value))
    if isinstance(value, dict):
        return ", ".join(f"{k}:{_flat(v)}" for k, v in value.items())
    return str(value)


def _describe_lines(data: dict[str, Any], indent: str = "") -> list[str]:
    """kubectl describe's shape: `Key: value`, lists and maps indented under their key."""
    out = []
    for key, value in data.items():
        label = key[:1].upper() + key[1:]
        if key == "events":
            continue
        if isinstance(value, dict) and value:
            out.append(f"{indent}{label}:")
            for k, v in value.items():
                shown = "as planned" if v is True else "differs from the plan" if v is False else _flat(v)
                out.append(f"{indent}  {k}: {shown or '<none>'}")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            out.append(f"{indent}{label}:")
            for item in value:
                out.append(f"{indent}  - " + "  ".join(f"{k}={_flat(v)}" for k, v in item.items()
                                                       if v not in (None, [], {})))
        else:
            shown = _flat(value) if value not in (None, "", [], {}) else "<none>"
            out.append(f"{indent}{label}: {shown}")
    return out


@main.command()
@lab_option
@click.argument("ref")
@json_option
def describe(lab_name: str | None, ref: str, as_json: bool) -> None:
    """One object and everything that touches it: a pod (NS/POD), a Service (svc/NS/NAME), a NetworkPolicy
    (netpol/NS/NAME) or a node (node/NAME), with its recent events.

    \b
    Examples:
      testbed describe default/client
      testbed describe svc/kube-system/kube-dns
      testbed describe netpol/x/allow-from-y --json
      testbed describe node/node2
    """
    from testbed.observe.describe import describe as run

    data = run(_lab(lab_name), ref)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for line in _describe_lines(data):
        out.print(line)
    out.print("Events:" + ("" if data.get("events") else " <none>"))
    for e in data.get("events", []):
        out.print(_event_line(e))


@main.command()
@lab_option
@click.option("--format", "fmt", type=click.Choice(["svg", "png", "dot", "mermaid"]), default="svg",
              show_default=True)
@click.option("-o", "--output", help="Write to this file (default: stdout).")
@click.option("--services", is_flag=True, help="Services, with arrows to their endpoints.")
@click.option("--policies", is_flag=True, help="NetworkPolicies, as arrows between the pods they allow.")
def graph(lab_name: str | None, fmt: str, output: str | None, services: bool, policies: bool) -> None:
    """Draw the lab: nodes with their pods, the router and the external hosts, the underlay, and the VXLAN mesh,
    host-gw routes or BGP sessions (down ones in red); SVG and PNG by Graphviz, DOT and Mermaid as text.

    \b
    Examples:
      testbed graph -o lab.svg
      testbed graph --services --policies --format png -o lab.png
      testbed graph --format mermaid
    """
    from testbed import lab
    from testbed.observe import graph as draw
    from testbed.observe.status import collect

    name = _lab(lab_name)
    _, plan = lab.synced_plan(name)
    observed = collect(name)
    if fmt == "mermaid":
        data = draw.mermaid(plan, services, observed).encode()
    else:
        text = draw.dot(plan, observed, services, policies)
        data = text.encode() if fmt == "dot" else draw.render(text, fmt)
    if output:
        with open(output, "wb") as f:
            f.write(data)
        err.print(f"wrote {output}")
    else:
        sys.stdout.buffer.write(data)


@main.command()
@lab_option
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="0: any free port.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback lets other machines see (and probe) the lab.")
def ui(lab_name: str | None, port: int, host: str) -> None:
    """A live web page of the lab: its picture, updated as it changes; a pod's details on a click; a probe
    matrix as a coloured grid; a trace with its hops lit on the picture. It only reads and probes. It listens on
    127.0.0.1, and its URL carries a random token that every request must show. Ctrl-C stops it.

    \b
    Examples:
      testbed ui                       # then open the URL it prints
      testbed ui --lab bgp --port 9000
    """
    import errno

    from testbed.errors import EnvironmentProblem
    from testbed.observe.ui.server import serve

    name = _lab(lab_name)
    if host not in ("127.0.0.1", "::1", "localhost"):
        err.print(styled(("warning:", "yellow"), f" listening on {host}: other machines can reach this page (its "
                                                 "token still guards it)"))
    try:
        server, url = serve(name, host, port)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise EnvironmentProblem(f"port {port} on {host} is already in use (choose another with --port)") from None
        raise EnvironmentProblem(f"cannot listen on {host}:{port}: {e.strerror}") from None
    click.echo(f"testbed ui for lab {name}: {url}", )
    sys.stdout.flush()
    try:
        server.serve_forever()
    finally:
        server.server_close()
