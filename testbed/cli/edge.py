"""The verbs of the cluster's edge: `ingresses` (Ingresses, Gateways and HTTPRoutes with their addresses, rules,
backends and conditions) and `tls` (the lab's CA, and certificates it signs, applied as Secrets)."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import click
import yaml
from rich.table import Table

from testbed.cli.base import _lab, _run, err, json_option, lab_option, main, out
from testbed.errors import InvalidInput, Problem


def edge_view(name: str) -> dict[str, Any]:
    from testbed import lab

    _, plan = lab.current_plan(name)
    rows: dict[str, list[dict[str, Any]]] = {"ingresses": [], "gateways": [], "httproutes": []}
    group = {"Ingress": "ingresses", "Gateway": "gateways", "HTTPRoute": "httproutes"}
    for key, summary in plan.edge.summary.items():
        kind, ns, obj = key.split("/", 2)
        rows[group[kind]].append({"namespace": ns, "name": obj, **summary, "status": plan.edge.status.get(key, {})})
    return {**rows, "warnings": plan.edge.warnings}


def _conditions(conditions: list[dict[str, str]]) -> str:
    """Each condition, with its reason where it is not the good one (Conflicted is good when False)."""
    good = {c["type"]: c["status"] == ("False" if c["type"] == "Conflicted" else "True") for c in conditions}
    return " ".join(f"{c['type']}={c['status']}" + ("" if good[c["type"]] else f"({c['reason']})")
                    for c in conditions)


def _show(data: dict[str, Any]) -> None:
    if not any(data[k] for k in ("ingresses", "gateways", "httproutes")):
        out.print("no Ingress, Gateway or HTTPRoute in this lab")
    table = Table("NAMESPACE", "NAME", "CLASS", "ADDRESS", "HOST", "PATH", "BACKEND", title="ingresses",
                  title_justify="left")
    for i in data["ingresses"]:
        address = " ".join(x["ip"] for x in i["status"].get("loadBalancer", {}).get("ingress", [])) or \
            ("ignored" if "ignored" in i else "")
        rules = i["rules"] or [{"host": "*", "path": "", "pathType": "", "backend": ""}]
        for n, r in enumerate(rules):
            table.add_row(*((i["namespace"], i["name"], i["class"] or "(default)", address) if n == 0
                            else ("", "", "", "")), r["host"], f"{r['path']} ({r['pathType']})" if r["path"] else "",
                          r["backend"])
        if i["defaultBackend"]:
            table.add_row("", "", "", "", "*", "(default backend)", i["defaultBackend"])
    if data["ingresses"]:
        out.print(table)
    table = Table("NAMESPACE", "NAME", "ADDRESSES", "LISTENER", "ROUTES", "CONDITIONS", title="gateways",
                  title_justify="left")
    for g in data["gateways"]:
        addresses = " ".join(a["value"] for a in g["status"].get("addresses", [])) or "none"
        table.add_row(g["namespace"], g["name"], addresses, "", "", _conditions(g["status"].get("conditions", [])))
        for listener, st in zip(g["listeners"], g["status"].get("listeners", []), strict=False):
            table.add_row("", "", "", f"{listener['name']} {listener['protocol']}:{listener['port']} "
                                      f"{listener['hostname']}", str(st["attachedRoutes"]),
                          _conditions(st["conditions"]))
    if data["gateways"]:
        out.print(table)
    table = Table("NAMESPACE", "NAME", "HOSTNAMES", "PARENT", "RULES", "CONDITIONS", title="httproutes",
                  title_justify="left")
    for r in data["httproutes"]:
        rules = "; ".join(", ".join(x["matches"]) + " → " + (", ".join(x["backends"]) or "/".join(x["filters"]))
                          for x in r["rules"])
        for n, p in enumerate(r["status"].get("parents", [])):
            table.add_row(*((r["namespace"], r["name"], " ".join(r["hostnames"])) if n == 0 else ("", "", "")),
                          f"{p['parentRef']['namespace']}/{p['parentRef']['name']}", rules if n == 0 else "",
                          _conditions(p["conditions"]))
    if data["httproutes"]:
        out.print(table)
    for w in data["warnings"]:
        err.print(f"warning: {w}")


@main.command()
@lab_option
@json_option
def ingresses(lab_name: str | None, as_json: bool) -> None:
    """Ingresses, Gateways and HTTPRoutes: addresses, hosts, rules and backends, and the conditions their
    status holds (a route's Accepted and ResolvedRefs per parent, a listener's attached routes).

    \b
    Examples:
      testbed ingresses
      testbed ingresses --json | jq '.httproutes[].status'
    """
    data = edge_view(_lab(lab_name))
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        _show(data)


@main.group()
def tls() -> None:
    """The lab's certificate authority and the certificates it signs.

    \b
    Examples:
      testbed tls issue web.example.com api.example.com --secret default/web-tls
      testbed tls ca > lab-ca.pem
    """


@tls.command()
@lab_option
@click.argument("hosts", nargs=-1, required=True)
@click.option("--secret", "secret_ref", required=True, help="The Secret to apply, as NS/NAME (or NAME: default).")
def issue(lab_name: str | None, hosts: tuple[str, ...], secret_ref: str) -> None:
    """Make a certificate for HOSTS, signed by the lab's CA (made once per lab), and apply it to the lab as a
    kubernetes.io/tls Secret. The key is never printed.

    \b
    Examples:
      testbed tls issue web.example.com --secret default/web-tls
      testbed tls issue '*.apps.example.com' --secret apps/wildcard
    """
    from testbed import lab
    from testbed import tls as certs
    from testbed.model.names import dns_label, dns_subdomain

    ns, _, name = secret_ref.rpartition("/")
    ns = ns or "default"
    try:
        dns_label(ns)
        dns_subdomain(name)
    except ValueError as e:
        raise InvalidInput([Problem("testbed tls issue", "--secret", str(e))]) from None
    lab_name = _lab(lab_name)
    cert, key = certs.issue(lab_name, list(hosts))
    fd, path = tempfile.mkstemp(prefix="testbed-secret-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(certs.secret(ns, name, cert, key), f)
        _run(lambda s: lab.apply(lab_name, path, s.say, s))
    finally:
        os.unlink(path)
    err.print(f"applied Secret {ns}/{name}: a certificate for {', '.join(hosts)} signed by lab {lab_name}'s CA "
              "(`testbed tls ca` prints it)")


@tls.command()
@lab_option
def ca(lab_name: str | None) -> None:
    """Print the lab's CA certificate (PEM), for clients to trust: curl --cacert, a browser, a test.

    \b
    Example:
      testbed tls ca > ca.pem && curl --cacert ca.pem --resolve web.example.com:443:198.51.100.1 https://web.example.com/
    """
    from testbed import tls as certs

    click.echo(certs.ca_pem(_lab(lab_name)), nl=False)
