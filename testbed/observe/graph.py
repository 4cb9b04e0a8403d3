"""`testbed graph`: the lab as a picture. Nodes are boxes with their pods inside, the router and the external
hosts beside them, the underlay a bridge they all hang from, and the pod network drawn as it is: the VXLAN mesh,
host-gw routes, or BGP sessions to the router (a session that is down in red). Optionally Services with arrows
to their endpoints, and NetworkPolicies as arrows between the pods they allow. DOT is rendered to SVG or PNG by
Graphviz; DOT and Mermaid are also given as text. Every element has a stable id (`node-node1`,
`pod-default-client`, `svc-default-web`), which the web page uses to highlight a trace."""

from __future__ import annotations

import re
import subprocess
from typing import Any

from testbed.errors import EnvironmentProblem
from testbed.plan.cluster import NodePlan, Plan
from testbed.policy.evaluate import peer_pods, selects

FONT = "Helvetica"
MANY = 60  # pairs of pods a policy rule may join with arrows of their own
COLORS = {"node": "#e8f0fe", "pod": "#ffffff", "router": "#fff4e5", "external": "#f1f8e9", "service": "#f3e5f5"}



def _on(plan: Plan, node: NodePlan) -> str:
    """Where the node runs, when the lab spans hosts."""
    return f"  on {node.host}" if len(plan.topology.hosts) > 1 else ""

def ident(kind: str, name: str) -> str:
    """An id for SVG and HTML: kind, then the name with anything but letters, digits and '-' as '-'."""
    return f"{kind}-" + re.sub(r"[^A-Za-z0-9-]", "-", name)


def _q(text: str) -> str:
    """A DOT string; `\\n` in it stays DOT's line break (names never hold quotes or backslashes)."""
    return '"' + text.replace('"', '\\"') + '"'


def _sessions(state: dict[str, Any]) -> dict[str, bool]:
    """BGP speaker → whether all its sessions are established (from status's bgp section)."""
    return {m: bool(info.get("sessions")) and all(s["info"] == "Established" for s in info["sessions"])
            for m, info in state.items()}


def dot(plan: Plan, observed: dict[str, Any] | None = None, services: bool = False, policies: bool = False) -> str:
    """The DOT text (pure, from the plan and what status observed)."""
    observed = observed or {}
    net = plan.topology.networking.network
    big = len(plan.nodes) > 8  # at 20 nodes, smaller type and only the pods' names
    title = f"lab {plan.lab}: {net}, kube-proxy {plan.topology.kubeProxy.mode}"
    lines = ["digraph lab {", f'  graph [label={_q(title)} labelloc=t fontname="{FONT}" fontsize={12 if big else 16}'
             ' rankdir=TB nodesep=0.25 ranksep=0.6 compound=true newrank=true];',
             f'  node [fontname="{FONT}" fontsize={8 if big else 10} shape=box style="rounded,filled"];',
             f'  edge [fontname="{FONT}" fontsize={7 if big else 9}];']
    ready = {f"{p['namespace']}/{p['name']}": p["ready"] for p in observed.get("pods", [])}
    states = {n["name"]: n["state"] for n in observed.get("nodes", [])}
    for node in plan.nodes:
        down = states.get(node.name, "running") != "running"
        title = f"{node.name}  {node.underlay_ip}  {node.cidr4}{_on(plan, node)}"
        lines += [f"  subgraph {_q('cluster_' + node.name)} {{",
                  f'    id={_q(ident("node", node.name))} label={_q(title)}'
                  f' style="rounded,filled" fillcolor="{COLORS["node"]}" color="{"red" if down else "#5b7db1"}";']
        pods = plan.pods_on(node.name)
        for pod in pods:
            label = pod.name if big else f"{pod.key}\\n{pod.ipv4}"
            bad = pod.key in ready and not ready[pod.key]
            lines.append(f'    {_q(ident("pod", pod.key))} [id={_q(ident("pod", pod.key))} label={_q(label)} '
                         f'fillcolor="{COLORS["pod"]}" color="{"red" if bad else "#333333"}" '
                         f'tooltip={_q(f"{pod.key} {pod.ipv4} on {node.name}")}];')
        if not pods:
            lines.append(f'    {_q(ident("empty", node.name))} [label="no pods" style=dashed];')
        else:  # a node's pods side by side, whatever points at them
            lines.append("    {rank=same; " + " ".join(_q(ident("pod", p.key)) for p in pods) + "}")
        lines.append(f'    {_q(ident("nic", node.name))} [id={_q(ident("nic", node.name))} label="eth0" shape=point];')
        lines.append(f'    {_first(plan, node.name)} -> {_q(ident("nic", node.name))} [style=invis];')  # eth0 below
        lines.append("  }")
    lines.append(f'  "fabric" [id="fabric" label={_q(f"underlay {plan.underlay}")} shape=box style="filled" '
                 'fillcolor="#dddddd" width=4];')
    lines += _grid(plan) if big else [f'  {_q(ident("nic", n.name))} -> "fabric" [dir=none color="#888888"];'
                                      for n in plan.nodes]
    if plan.router:
        r, rid = plan.router, _q(ident("machine", plan.router.name))
        label = _q("router\\n" + r.underlay_ip)
        lines.append(f'  {rid} [id={rid} label={label} shape=box3d fillcolor="{COLORS["router"]}"];')
        lines.append(f'  "fabric" -> {_q(ident("machine", r.name))} [dir=none color="#888888"];')
        lines.append(f'  subgraph "cluster_external" {{ label={_q(f"outside {plan.topology.external.cidr}")} '
                     f'style="dashed"; id="external";')
        for h in plan.externals:
            hid, label = _q(ident("machine", h.name)), _q(f"{h.name} ({h.role})" + "\\n" + h.ip)
            lines.append(f'    {hid} [id={hid} label={label} fillcolor="{COLORS["external"]}"];')
        lines.append("  }")
        for h in plan.externals:
            lines.append(f'  {_q(ident("machine", r.name))} -> {_q(ident("machine", h.name))} [dir=none '
                         'color="#888888"];')
    lines += _pod_network(plan, observed)
    if services:
        lines += _services(plan)
    if policies:
        lines += _policies(plan)
    return "\n".join([*lines, "}"]) + "\n"


def _first(plan: Plan, node: str) -> str:
    pods = plan.pods_on(node)
    return _q(ident("pod", pods[0].key) if pods else ident("empty", node))


def _grid(plan: Plan) -> list[str]:
    """Many nodes in rows (a slide is wider than tall, but not 20 boxes wide): invisible edges stack each node
    above the one a row later; the last row hangs from the underlay, the others say theirs in their label."""
    cols = max(4, round(len(plan.nodes) ** 0.5))
    out = []
    for i, node in enumerate(plan.nodes):
        if i + cols < len(plan.nodes):
            below = plan.nodes[i + cols].name
            out.append(f'  {_q(ident("nic", node.name))} -> {_first(plan, below)} [style=invis weight=10];')
        else:
            out.append(f'  {_q(ident("nic", node.name))} -> "fabric" [dir=none color="#888888"];')
    return out


def _pod_network(plan: Plan, observed: dict[str, Any]) -> list[str]:
    net, out = plan.topology.networking.network, []
    links = {(x["from"], x["to"]): x["state"] for x in observed.get("links", []) if x["type"] == net}
    if net == "bgp" and plan.router:
        up = _sessions(observed.get("bgp", {}))
        for node in plan.nodes:
            color = "#2e7d32" if up.get(node.name, True) else "red"
            out.append(f'  {_q(ident("nic", node.name))} -> {_q(ident("machine", plan.router.name))} '
                       f'[id={_q(ident("bgp", node.name))} label="BGP" style=bold dir=both color="{color}" '
                       f'fontcolor="{color}" constraint=false];')
        return out
    big, down = len(plan.nodes) > 8, 0
    for a in plan.nodes:
        for b in plan.nodes:
            if a.index < b.index:
                state = links.get((a.name, b.name), "up")
                down += state != "up"
                if big and state == "up":
                    continue  # 190 arcs at 20 nodes hide everything: draw the broken ones, count the rest
                color = "#1565c0" if state == "up" else "red"
                label = ("VXLAN" if net == "vxlan" else "route") if len(plan.nodes) <= 4 else ""
                style = "dashed" if net == "vxlan" else "dotted"
                out.append(f'  {_q(ident("nic", a.name))} -> {_q(ident("nic", b.name))} '
                           f'[id={_q(ident(net, f"{a.name}-{b.name}"))} dir=both style={style} color="{color}" '
                           f'label={_q(label)} constraint=false];')
    if big:
        pairs = len(plan.nodes) * (len(plan.nodes) - 1) // 2
        kind = "VXLAN tunnels" if net == "vxlan" else "host-gw routes"
        text = f"{net} full mesh: {pairs} {kind}, " + (f"{down} down (red)" if down else "all up")
        out.append(f'  "mesh" [id="mesh" label={_q(text)} shape=note fillcolor="{"#ffebee" if down else "#e3f2fd"}"];')
        out.append('  "mesh" -> "fabric" [style=invis];')
    return out


def _services(plan: Plan) -> list[str]:
    out = []
    for svc in plan.services:
        if svc.type == "ExternalName":
            continue
        sid = ident("svc", svc.key)
        label = f"svc {svc.key}" + "\\n" + (svc.cluster_ips[0] if svc.cluster_ips else "headless")
        out.append(f'  {_q(sid)} [id={_q(sid)} label={_q(label)} shape=hexagon fillcolor="{COLORS["service"]}"];')
        for e in svc.endpoints:
            if e.pod:
                color, style = ("#6a1b9a", "solid") if e.ready else ("#bbbbbb", "dashed")
                out.append(f'  {_q(sid)} -> {_q(ident("pod", e.pod))} [color="{color}" style={style}];')
    return out


def _policies(plan: Plan) -> list[str]:
    """An arrow from each peer pod to each pod a policy's ingress rule admits it to (egress rules, from each
    selected pod to each peer pod), labelled with the policy. A rule joining many pods to many (40 x 40 is 1,600
    arrows, which neither Graphviz nor a person can place) goes through one box for the rule instead."""
    out, seen = [], set()
    for pol in plan.policies:
        for direction in ("ingress", "egress"):
            targets = [p for p in plan.pods if selects(pol, p, direction)]
            rules = pol.spec.ingress if direction == "ingress" else pol.spec.egress
            for i, rule in enumerate(rules):
                peers = rule.from_ if direction == "ingress" else rule.to
                others = [p for peer in peers if peer.ipBlock is None
                          for p in peer_pods(peer, pol.namespace, plan.pods, plan.namespaces)]
                pairs = [(o, t) if direction == "ingress" else (t, o) for t in targets for o in others]
                if len(pairs) > MANY:
                    out += _policy_box(pol.key, f"{direction} rule {i + 1}", pairs)
                    continue
                for a, b in pairs:
                    if (a.key, b.key, pol.key) not in seen and a.key != b.key:
                        seen.add((a.key, b.key, pol.key))
                        out.append(f'  {_q(ident("pod", a.key))} -> {_q(ident("pod", b.key))} [color="#2e7d32" '
                                   f'label={_q(pol.metadata.name)} fontcolor="#2e7d32" constraint=false];')
    return out


def _policy_box(key: str, rule: str, pairs: list) -> list[str]:
    box = ident("netpol", f"{key}-{rule.replace(' ', '-')}")
    out = [f'  {_q(box)} [id={_q(box)} label={_q(f"netpol {key}" + chr(92) + "n" + rule)} shape=cds '
           'fillcolor="#e8f5e9" color="#2e7d32"];']
    out += [f'  {_q(ident("pod", a))} -> {_q(box)} [color="#2e7d32" constraint=false];'
            for a in sorted({a.key for a, _ in pairs})]
    out += [f'  {_q(box)} -> {_q(ident("pod", b))} [color="#2e7d32"];' for b in sorted({b.key for _, b in pairs})]
    return out


def mermaid(plan: Plan, services: bool = False, observed: dict[str, Any] | None = None) -> str:
    """The same picture as Mermaid text (a flowchart), for a README or a slide; what is down is red."""
    observed = observed or {}
    lines, links, red = ["flowchart TB", f"  fabric[(underlay {plan.underlay})]"], 0, []

    def link(text: str, down: bool = False) -> None:
        nonlocal links
        lines.append(text)
        red.extend([links] if down else [])
        links += 1

    states = {n["name"]: n["state"] for n in observed.get("nodes", [])}
    for node in plan.nodes:
        lines.append(f'  subgraph {ident("node", node.name)}["{node.name} {node.underlay_ip}{_on(plan, node)}"]')
        lines += [f'    {ident("pod", p.key)}["{p.key}<br/>{p.ipv4}"]' for p in plan.pods_on(node.name)]
        lines.append("  end")
        link(f"  {ident('node', node.name)} --- fabric", states.get(node.name, "running") != "running")
    if plan.router:
        link(f'  {ident("machine", plan.router.name)}{{{{"router {plan.router.underlay_ip}"}}}} --- fabric')
        for h in plan.externals:
            link(f'  {ident("machine", h.name)}["{h.name} {h.ip}"] --- {ident("machine", plan.router.name)}')
    net = plan.topology.networking.network
    if net == "bgp" and plan.router:
        up = _sessions(observed.get("bgp", {}))
        for n in plan.nodes:
            link(f"  {ident('node', n.name)} ==BGP=== {ident('machine', plan.router.name)}", not up.get(n.name, True))
    else:  # a big mesh only shows its broken links, as in the SVG
        state = {(x["from"], x["to"]): x["state"] for x in observed.get("links", []) if x["type"] == net}
        for a in plan.nodes:
            for b in plan.nodes:
                if a.index < b.index and (len(plan.nodes) <= 8 or state.get((a.name, b.name), "up") != "up"):
                    link(f"  {ident('node', a.name)} -.{'VXLAN' if net == 'vxlan' else 'route'}.- "
                         f"{ident('node', b.name)}", state.get((a.name, b.name), "up") != "up")
    if services:
        for svc in plan.services:
            if svc.type != "ExternalName":
                lines.append(f'  {ident("svc", svc.key)}{{{{"svc {svc.key}"}}}}')
                for e in svc.endpoints:
                    if e.pod:
                        link(f"  {ident('svc', svc.key)} --> {ident('pod', e.pod)}")
    lines += [f"  linkStyle {i} stroke:red,stroke-width:3px" for i in red]
    return "\n".join(lines) + "\n"


def render(text: str, fmt: str) -> bytes:
    """DOT through Graphviz to svg or png."""
    try:
        proc = subprocess.run(["dot", f"-T{fmt}"], input=text.encode(), capture_output=True, check=False, timeout=60)
    except FileNotFoundError:
        raise EnvironmentProblem("Graphviz is not installed (apt-get install graphviz; `make up` does it), or "
                                 "ask for --format dot or mermaid") from None
    if proc.returncode != 0:
        raise EnvironmentProblem(f"dot failed: {proc.stderr.decode(errors='replace')[-500:]}")
    return proc.stdout
