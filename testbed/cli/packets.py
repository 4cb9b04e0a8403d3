"""The verbs about packets: capture (and trace)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from testbed.cli.base import _lab, err, json_option, lab_option, main, out, styled


@main.command()
@lab_option
@click.argument("target")
@click.option("-i", "--interface", help="Interface (default: eth0 in a pod, any on a machine, the bridge in fabric).")
@click.option("--filter", "bpf", default="", help="A tcpdump (BPF) filter, e.g. 'tcp port 8080'.")
@click.option("-c", "--count", type=click.IntRange(1), help="Stop after this many packets.")
@click.option("--duration", type=click.FloatRange(0.1, 3600), default=10.0, show_default=True,
              help="Stop after this many seconds.")
@click.option("-w", "--write", "write", help="Write a pcap file (- for stdout: `| tshark -r -`).")
def capture(lab_name: str | None, target: str, interface: str | None, bpf: str, count: int | None, duration: float,
            write: str | None) -> None:
    """Capture packets with tcpdump inside TARGET: a pod (NS/POD), a node, the router, an external host, or
    `fabric` (the underlay bridge between the machines). Without -w it prints tcpdump's one-line summaries;
    it stops by itself at --count packets or after --duration seconds.

    \b
    Examples:
      testbed capture default/client -c 10
      testbed capture fabric --filter 'udp port 8472' -c 20 -w vxlan.pcap
      testbed capture node2 -i vxlan0 --duration 5 -w - | tshark -r -
    """
    from testbed import lab
    from testbed.observe.capture import capture as run

    name = _lab(lab_name)
    _, plan = lab.current_plan(name)
    if write in (None, "-"):
        code = run(plan, target, interface, bpf, count, duration, sys.stdout.buffer if write == "-" else None)
    else:
        with open(write, "wb") as f:
            code = run(plan, target, interface, bpf, count, duration, f)
        err.print(f"wrote {write}")
    sys.exit(0 if code in (0, 124) else 1)


@main.command()
@lab_option
@click.argument("source")
@click.argument("target")
@click.option("--protocol", type=click.Choice(["tcp", "udp"]), default="tcp", show_default=True)
@click.option("--timeout", type=float, default=2.0, show_default=True, help="Seconds the connection may take.")
@json_option
def trace(lab_name: str | None, source: str, target: str, protocol: str, timeout: float, as_json: bool) -> None:
    """Follow one real packet from SOURCE (NS/POD, or a machine) to TARGET (IP:PORT, svc/NS/NAME:PORT,
    NS/POD:PORT or NAME:PORT) through every kernel it crosses, with nftables tracing: the source's route, each
    node's rules (the Service that translated it and the endpoint it chose, the NetworkPolicy that admitted or
    dropped it, NAT), each routing decision (VXLAN, host-gw or BGP, and its next hop), and the destination
    pod; or where it died and why. Exit 0 when it was delivered, 1 when not.

    \b
    Examples:
      testbed trace default/client svc/default/web:80
      testbed trace x/a y/b:80 --json
      testbed trace default/client 10.96.0.10:53 --protocol udp
    """
    from testbed import lab
    from testbed.observe.trace import trace as run

    _, plan = lab.current_plan(_lab(lab_name))
    report = run(plan, source, target, protocol, timeout)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        _print_trace(report)
    sys.exit(0 if report["end"] == "delivered" and report["result"] == "connected" else 1)


def _print_trace(r: dict[str, Any]) -> None:
    ok = r["end"] == "delivered" and r["result"] == "connected"
    answered = f", answered by {r['answeredBy']}" if r.get("answeredBy") else ""
    out.print(styled(f"{r['from']} → {r['to']}:{r['port']}/{r['protocol']}: ",
                     (r["result"], "green" if ok else "red"), f" in {r['ms']} ms{answered}"))
    for hop in r["hops"]:
        out.print(styled((f"  {hop['machine']}", "bold"), f"  in {hop['in']}" if hop.get("in") else ""))
        for step in hop["steps"]:
            color = {"drop": "red", "reject": "red", "missing": "red", "service": "cyan", "policy": "green",
                     "deliver": "green"}.get(step["kind"], "")
            rule = (f"   [{step['rule']}]", "dim") if step.get("rule") else ""
            out.print(styled("      ", (step["text"], color), rule))
    out.print(styled(("  " + r["summary"], "green" if ok else "red")))
    if r.get("model"):
        m = r["model"]
        words = "allowed" if m["allowed"] else "denied"
        out.print(styled("  NetworkPolicy model: ", words, ("" if m["agrees"] else "  * the kernel disagrees",
                                                                 "" if m["agrees"] else "red bold")))
