"""`testbed fault`: break the lab on purpose, see what is broken, undo it; with --measure, the outage a client
saw."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from testbed.cli.base import _lab, json_option, lab_option, main, out

TIMES = "%H:%M:%S"


def _shared(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([
        lab_option,
        click.option("--for", "lasts", metavar="DURATION", help="Undo it after this long (500ms, 30s, 2m)."),
        click.option("--measure", nargs=2, metavar="FROM TARGET",
                     help="Probe TARGET (IP:PORT, svc/NS/NAME:PORT, NS/POD:PORT; a name with --protocol dns) "
                          "from FROM across the fault and its recovery, and report the outages."),
        click.option("--period", default="10ms", show_default=True, help="Between two probes."),
        click.option("--protocol", type=click.Choice(["tcp", "udp", "dns"]), default="tcp", show_default=True),
        click.option("--timeout", default="60s", show_default=True, help="The longest wait for recovery."),
        click.option("--plot", type=click.Path(dir_okay=False), help="A PNG timeline of the probes."),
        json_option,
    ]):
        fn = option(fn)
    return fn


def _run(kind: str, args: dict[str, Any], lab_name: str | None, lasts: str | None, measure: tuple[str, str] | None,
         period: str, protocol: str, timeout: str, plot: str | None, as_json: bool) -> None:
    from testbed.faults import duration, session

    name = _lab(lab_name)
    probe = {"from": measure[0], "target": measure[1], "protocol": protocol,
             "period": duration(period, "--period")} if measure else None
    result = session.run(name, kind, args, duration(lasts) if lasts else None, probe,
                         duration(timeout, "--timeout"))
    if plot and "measure" in result:
        from testbed.faults.measure import timeline_png

        Path(plot).write_bytes(timeline_png(result["measure"]))
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    fault = result["fault"]
    from testbed.faults import kinds

    lasting = kinds()[kind].undoable
    out.print(f"fault {fault['id']}: {kind} " + " ".join(f"{v}" for v in args.values() if v is not None) +
              (f" (undone after {lasts})" if lasts else
               f" (`testbed fault clear {fault['id']}` undoes it)" if lasting else ""))
    if "measure" in result:
        m = result["measure"]
        out.print(f"{m['probes']} probes, {m['failed']} failed; outage {m['outageSeconds']:.3f} s, recovered "
                  f"{m['recoverySeconds']:.3f} s after the fault" + ("" if m["recovered"] else " (NOT recovered)"))
        for w in m["outages"]:
            out.print(f"  outage {time.strftime(TIMES, time.localtime(w['start']))}.{int(w['start'] % 1 * 1000):03d}"
                      f" for {w['length']:.3f} s, {w['failed']} probe(s) failed")


@main.group()
def fault() -> None:
    """Break the lab on purpose: nodes, links, the router, pods. Each fault is kept in the lab's state until it
    is cleared (`--for` clears it by itself); `--measure` reports the outage a client saw.

    \b
    Examples:
      testbed fault node-stop node2 --for 20s --measure default/client svc/default/web:80
      testbed fault loss node1 10 --for 30s
      testbed fault list
      testbed fault clear
    """


def _kind(name: str, help_text: str, arguments: list[click.Argument], extra: list[Any] | None = None) -> None:
    def command(**kw: Any) -> None:
        shared = {k: kw.pop(k) for k in ("lab_name", "lasts", "measure", "period", "protocol", "timeout", "plot",
                                          "as_json")}
        if "from_" in kw:
            kw["from"] = kw.pop("from_")
        _run(name, kw, **shared)

    command.__doc__ = help_text
    for param in [*arguments, *(extra or [])][::-1]:
        command = param(command)
    fault.command(name)(_shared(command))


_kind("node-stop", "Stop NODE's container: its pods go NotReady after the grace period and its Deployment pods "
      "are recreated elsewhere after the eviction timeout; clear starts it again.\n\n\b\nExample:\n  testbed fault "
      "node-stop node2 --for 15s", [click.argument("node")])
_kind("node-start", "Start NODE's container again (the control plane brings its pods back, same IPs).\n\n\b\n"
      "Example:\n  testbed fault node-start node2", [click.argument("node")])
_kind("node-restart", "Restart NODE's container: its pods answer again, same IPs, within seconds.\n\n\b\nExample:\n"
      "  testbed fault node-restart node1 --measure default/client svc/default/web:80", [click.argument("node")])
_kind("node-pause", "Freeze NODE's container, a hung node: its links stay up and it answers nothing.\n\n\b\n"
      "Example:\n  testbed fault node-pause node3 --for 10s", [click.argument("node")])
_kind("link-down", "Set NODE's underlay link down.\n\n\b\nExample:\n  testbed fault link-down node2 --for 5s",
      [click.argument("node")])
_kind("partition", "Drop everything between the nodes NODES and the nodes of --from, on the fabric.\n\n\b\n"
      "Example:\n  testbed fault partition node1 --from node2,node3", [click.argument("nodes")],
      [click.option("--from", "from_", required=True, help="The other group: nodes, comma-separated.")])
_kind("router-restart", "Restart the router's container (in bgp mode, sessions reconverge within the hold "
      "time).\n\n\b\nExample:\n  testbed fault router-restart --measure x/a y/b:80", [])
_kind("kill", "Kill POD's process (a netexec pod: its sockets), which comes back as a restarted container.\n\n\b\n"
      "Example:\n  testbed fault kill default/web-<hash>-<suffix>", [click.argument("pod")])
_kind("loss", "Drop PERCENT of what NODE sends onto the fabric, at random (nftables numgen: no netem here).\n\n"
      "\b\nExample:\n  testbed fault loss node1 10 --for 30s", [click.argument("node"), click.argument("percent")])
_kind("rate", "Cap NODE's underlay link at RATE (10mbit, 500kbit, 1gbit), both ways, with tbf.\n\n\b\nExample:\n"
      "  testbed fault rate node2 20mbit --for 1m", [click.argument("node"), click.argument("rate")])
_kind("delay", "Delay what NODE sends on its underlay link by MS milliseconds (± --jitter), by a userspace "
      "delayer in its agent fed by iptables NFQUEUE (this kernel has no netem). It carried 20,000-40,000 packets/s "
      "(measured here with 64-byte UDP datagrams: bench/bench_faults.py); "
      "past 20,000 held packets, packets pass undelayed and `fault list` counts them.\n\n\b\nExample:\n"
      "  testbed fault delay node1 20 --for 1m", [click.argument("node"), click.argument("ms")],
      [click.option("--jitter", default=None, help="Milliseconds, at most MS.")])


@fault.command("list")
@lab_option
@json_option
def list_cmd(lab_name: str | None, as_json: bool) -> None:
    """The lab's faults, with when they end, and the delayer's counters.

    \b
    Example:
      testbed fault list --json
    """
    from testbed import faults, state
    from testbed.runtime import agent

    name = _lab(lab_name)
    found = faults.listing(name)
    for f in found:
        if f["kind"] == "delay":
            try:
                if f["notes"].get("via") != "netem":
                    f["notes"] |= agent.call(state.run_dir(name) / f["args"]["node"], "delay")
            except Exception:
                f["notes"]["counters"] = "unavailable"
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        out.print("no faults")
    for f in found:
        until = f" until {time.strftime(TIMES, time.localtime(f['until']))}" if f["until"] else ""
        extra = f"  (overflow {f['notes']['overflow']}, passed {f['notes']['passed']})" \
            if "overflow" in f["notes"] else ""
        out.print(f"{f['id']}  {f['kind']}  " + " ".join(f"{k}={v}" for k, v in f["args"].items() if v is not None) +
                  f"  since {time.strftime(TIMES, time.localtime(f['since']))}{until}{extra}")


@fault.command("clear")
@lab_option
@click.argument("fault_id", required=False, metavar="[ID]")
def clear_cmd(lab_name: str | None, fault_id: str | None) -> None:
    """Undo a fault (every fault, without ID). An unknown ID exits 3 and lists the faults.

    \b
    Examples:
      testbed fault clear
      testbed fault clear 3fa9c1
    """
    from testbed import faults

    done = faults.clear(_lab(lab_name), fault_id)
    out.print(f"cleared {len(done)} fault(s)" + (": " + ", ".join(f["id"] for f in done) if done else ""))


@main.group()
def scenario() -> None:
    """Scenarios: steps against a lab (apply, fault, clear, wait, probe, expect) and a report.

    \b
    Example:
      testbed scenario run node-loss.yaml
    """


@scenario.command("run")
@lab_option
@click.argument("file", type=click.Path(dir_okay=False))
@json_option
def scenario_run(lab_name: str | None, file: str, as_json: bool) -> None:
    """Run a scenario file's steps in order and report each; exit 0 when every expectation holds, 1 when one
    does not. A file with an unknown step or field exits 2, naming its line and field, before anything runs.

    \b
    Example:
      testbed scenario run tests/e2e/scenarios/node-stop.yaml --json
    """
    import sys

    from testbed.faults import scenario as runner
    from testbed.model.scenario import load

    scenario_file = load(file)  # checked before any lab is asked for
    result = runner.run(file, scenario_file.lab or _lab(lab_name))
    if as_json:
        click.echo(json.dumps({k: v for k, v in result.items() if k != "measures"} | {
            "measures": {k: {x: y for x, y in m.items() if x != "samples"} for k, m in result["measures"].items()}},
            indent=2))
    else:
        for s in result["steps"]:
            out.print(f"{'PASS' if s['ok'] else 'FAIL'}  {s['step']}: {s.get('detail', '')}  ({s['seconds']:.2f} s)")
        out.print(f"scenario {result['scenario']}: {'passed' if result['ok'] else 'FAILED'} in "
                  f"{result['seconds']:.1f} s")
    sys.exit(0 if result["ok"] else 1)
