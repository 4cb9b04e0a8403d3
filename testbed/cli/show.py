"""Tables for people: what `status` and `routes` print without --json."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from testbed.cli.base import styled


def _mark(value: str, good: str) -> Text:
    return Text(value, style="" if value == good else "red")


def status(out: Console, data: dict[str, Any]) -> None:
    color = {"ready": "green", "degraded": "red"}.get(data["phase"], "yellow")
    out.print(styled((data["name"], "bold"), "  phase=", (data["phase"], color),
                     f"  network={data['network']}  dualStack={data['dualStack']}  podMTU={data['podMTU']}  "
                     f"underlay={data['underlay']}"))
    for reason in data["reasons"][:20]:
        out.print(styled(("  ✗", "red"), f" {reason}"))
    if len(data["reasons"]) > 20:
        out.print(f"  ... and {len(data['reasons']) - 20} more (--json lists them all)")
    if data["hint"]:
        out.print(f"  hint: {data['hint']}")
    nodes = Table("NODE", "HOST", "CONTAINER", "STATE", "AGENT", "CONDITION", "UNDERLAY IP", "POD CIDRS",
                  title="nodes", title_justify="left")
    for n in data["nodes"]:
        cond = n.get("condition", {"ready": True})
        word = "Ready" if cond["ready"] else "NotReady" + (", evicted" if cond.get("evicted") else "")
        nodes.add_row(n["name"], n.get("host", ""), n["container"], _mark(n["state"], "running"),
                      _mark(n["agent"], "answering"), _mark(word, "Ready"), n["underlayIP"], " ".join(n["podCIDRs"]))
    out.print(nodes)
    machines = Table("MACHINE", "ROLE", "HOST", "CONTAINER", "STATE", "IPS", title="router, external hosts, fabrics",
                     title_justify="left")
    for m in data["machines"]:
        machines.add_row(m["name"], m["role"], m.get("host", ""), m["container"], _mark(m["state"], "running"),
                         " ".join(m["ips"]))
    out.print(machines)
    extra = data.get(data["network"]) or {}
    if extra:
        bgp = Table("SPEAKER", "SESSION", "STATE", "ANNOUNCES", title="BGP", title_justify="left")
        for speaker, info in extra.items():
            sessions = info.get("sessions") or [{"name": "-", "info": "no answer"}]
            for i, x in enumerate(sessions):
                bgp.add_row(speaker if i == 0 else "", x["name"], _mark(x["info"], "Established"),
                            " ".join(info.get("announces", [])) if i == 0 else "")
        out.print(bgp)
    pods = Table("NAMESPACE", "POD", "NODE", "IPS", "PORTS", "READY", "RESTARTS", title="pods",
                 title_justify="left")
    for p in data["pods"]:
        pods.add_row(p["namespace"], p["name"], p["node"], " ".join(p["ips"]), " ".join(p["ports"]),
                     _mark("yes" if p["ready"] else "no", "yes"), str(p["restarts"]) if p["processes"] else "")
    out.print(pods)
    _links(out, data["links"])


LINKS_LISTED = 60  # past this, links are counted by type and state (a 200-node VXLAN mesh has 19,900)
NOT_UP_LISTED = 20


def _links(out: Console, rows: list[dict[str, Any]]) -> None:
    """Every link while a person can read them; past LINKS_LISTED, a count per type and state, then the links
    that are not up (rendering 19,900 rows took longer than the 200-node `up` before it)."""
    shown = rows if len(rows) <= LINKS_LISTED else [r for r in rows if r["state"] != "up"][:NOT_UP_LISTED]
    if len(rows) > LINKS_LISTED:
        counts: dict[tuple[str, str], int] = {}
        for r in rows:
            counts[r["type"], r["state"]] = counts.get((r["type"], r["state"]), 0) + 1
        summary = Table("TYPE", "STATE", "LINKS", title=f"links: {len(rows):,}", title_justify="left",
                        caption="(status --json lists each)", caption_justify="left")
        for (kind, state), n in sorted(counts.items()):
            summary.add_row(kind, _mark(state, "up"), str(n))
        out.print(summary)
        if not shown:
            return
    links = Table("TYPE", "FROM", "TO", "STATE", title="links" if shown is rows else "links not up",
                  title_justify="left")
    for link in shown:
        links.add_row(link["type"], f"{link['from']}:{link['fromIf']}", f"{link['to']}:{link['toIf']}",
                      _mark(link["state"], "up"))
    out.print(links)


def routes(out: Console, data: dict[str, list[dict[str, Any]]]) -> None:
    for machine, rows in data.items():
        table = Table("DESTINATION", "VIA", "DEV", "PROTOCOL", title=machine, title_justify="left")
        for r in rows:
            table.add_row(r["dst"] if r["type"] == "unicast" else f"{r['type']} {r['dst']}", r["gateway"] or "",
                          r["dev"] or "", r["protocol"])
        out.print(table)


def services(out: Console, data: list[dict[str, Any]]) -> None:
    table = Table("NAMESPACE", "NAME", "TYPE", "CLUSTER-IPS", "EXTERNAL", "PORTS", "ENDPOINTS", title="services",
                  title_justify="left")
    for s in data:
        ports = " ".join(f"{p['port']}{':' + str(p['nodePort']) if p['nodePort'] else ''}/{p['protocol']}"
                         for p in s["ports"])
        cluster = "None" if s["headless"] else " ".join(s["clusterIPs"])
        external = s["externalName"] or " ".join(s["loadBalancerIPs"] + s["externalIPs"])
        endpoints = " ".join(e["ips"][0] for e in s["endpoints"] if e["ready"]) or Text("none", style="red")
        table.add_row(s["namespace"], s["name"], s["type"], cluster, external, ports, endpoints)
    out.print(table)
