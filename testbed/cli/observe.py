"""The verbs that look inside a lab: diagnose (and later describe, events, graph, ui)."""

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
