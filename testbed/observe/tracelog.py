"""What `nft monitor trace` says of one packet on one machine, read into events and named in the lab's terms:
the Service a frontend belongs to (not a map element or a hashed chain), the endpoint it chose, the
NetworkPolicy whose rule admitted or whose isolation dropped the packet, a masquerade, a reject and its reason.
Pure: the lines come from the machine's agent (agent/trace.py), the names from the plan.

A trace line is `trace id ID FAMILY TABLE CHAIN` then `packet: ...`, `rule TEXT # handle N (verdict V)`,
`verdict V` or `policy P`. iptables-nft rules are nft rules too: their text is taken from iptables-save (the
agent pairs handles with it), so both kube-proxy modes read alike."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from testbed.installers.kube_proxy.view import entry_id
from testbed.installers.policy.view import rule_id
from testbed.plan.cluster import Plan

LINE = re.compile(r"^trace id (\S+) (\S+) (\S+) (\S+) (packet: (.*)|rule (.*?)(?: # handle (\d+))? \(verdict (.*)\)"
                  r"|verdict (.*)|policy (.*))\s*$")
FIELD = re.compile(r'(iif|oif) "([^"]+)"|ip6? saddr (\S+)|ip6? daddr (\S+)|(?:tcp|udp|sctp) dport (\d+)')
POLICY_RULE = re.compile(r"(p[0-9a-f]{10})-(in|eg)(\d+)")


@dataclass
class Event:
    family: str
    table: str
    chain: str
    kind: str  # packet | rule | verdict | policy
    text: str = ""
    verdict: str = ""
    handle: int | None = None
    packet: dict[str, Any] = field(default_factory=dict)  # for packet lines: iif, oif, saddr, daddr, dport


def _packet(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in FIELD.finditer(text):
        if m.group(1):
            out[m.group(1)] = m.group(2)
        elif m.group(3):
            out["saddr"] = m.group(3)
        elif m.group(4):
            out["daddr"] = m.group(4)
        elif m.group(5):
            out["dport"] = int(m.group(5))
    return out


def parse(lines: list[str]) -> list[Event]:
    """The first traced packet's events. Only the flow's first packet is marked, but its trace id changes where
    a bridged packet is routed, and a retransmission is marked again: it starts at the marking table."""
    events: list[Event] = []
    for line in lines:
        m = LINE.match(line)
        if not m:
            continue
        family, table, chain = m.group(2), m.group(3), m.group(4)
        if m.group(6) is not None:
            if events and table == "testbed-trace":
                break  # a retransmission
            events.append(Event(family, table, chain, "packet", m.group(6), packet=_packet(m.group(6))))
        elif m.group(7) is not None:
            events.append(Event(family, table, chain, "rule", m.group(7).strip(), m.group(9),
                                int(m.group(8)) if m.group(8) else None))
        elif m.group(10) is not None:
            events.append(Event(family, table, chain, "verdict", verdict=m.group(10).strip()))
        else:
            events.append(Event(family, table, chain, "policy", verdict=(m.group(11) or "").strip()))
    return events


class Names:
    """The lab's names for what the rules hold: frontends, endpoints, entry ids, policy rule ids."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.frontends: dict[tuple[str, str, int], str] = {}  # (address, protocol, port) → ns/svc:port
        self.node_ports: dict[tuple[str, int], str] = {}
        self.entries: dict[str, str] = {}  # kube-proxy entry id (upper-cased in chain names) → ns/svc:port
        for svc in plan.services:
            for p in svc.ports:
                label = f"{svc.key}:{p.name or p.port}"
                for ip in svc.cluster_ips + svc.external_ips + svc.lb_ips:
                    self.frontends[(ip, p.protocol.lower(), p.port)] = label
                if p.node_port:
                    self.node_ports[(p.protocol.lower(), p.node_port)] = label
                for family in (4, 6):
                    self.entries[entry_id(svc.key, p.key, family).upper()] = label
        self.pods = {ip: pod for pod in plan.pods for ip in (pod.ipv4, pod.ipv6) if ip}
        self.rules = {rule_id(pol, d, i): f"{pol.key} ({d} rule {i + 1})" for pol in plan.policies
                      for d in ("ingress", "egress") for i in range(len(pol.spec.ingress if d == "ingress"
                                                                            else pol.spec.egress))}

    def service(self, daddr: str, protocol: str, dport: int) -> str | None:
        return self.frontends.get((daddr, protocol, dport)) or self.node_ports.get((protocol, dport))

    def pod(self, address: str) -> str:
        pod = self.pods.get(address.split("]")[0].strip("["))
        return f"pod {pod.key} on {pod.node}" if pod else "no pod"

    def policy_rule(self, text: str) -> str | None:
        m = POLICY_RULE.search(text)
        return self.rules.get(f"{m.group(1)}-{m.group(2)}{m.group(3)}") if m else None

    def entry(self, chain: str) -> str | None:
        m = re.match(r"KUBE-(?:SVC|EXT|SCX)-([0-9A-F]{12})", chain)
        return self.entries.get(m.group(1)) if m else None


@dataclass
class Step:
    kind: str  # arrive, service, dnat, masquerade, policy, reject, drop
    text: str
    where: str = ""  # family table chain [handle]: the rule, as nft names it


@dataclass
class Passage:
    """What happened to the packet on one machine."""

    steps: list[Step] = field(default_factory=list)
    iif: str | None = None
    oif: str | None = None
    daddr: str | None = None  # after this machine's NAT
    dport: int | None = None
    saddr: str | None = None
    fate: str = "forwarded"  # forwarded | dropped | rejected


def _where(e: Event) -> str:
    return f"{e.family} {e.table} {e.chain}" + (f" #{e.handle}" if e.handle is not None else "")


def _rule_step(e: Event, text: str, cur: Passage, names: Names, protocol: str) -> Step | None:
    """The step a matching rule stands for, in the lab's words; None for bookkeeping rules."""
    verdict, where = e.verdict, _where(e)
    frontend = names.service(cur.daddr or "", protocol, cur.dport or 0) if cur.daddr else None
    target = verdict.split()[-1] if verdict.startswith(("goto", "jump")) else ""
    if "reject-service" in (target, e.chain) or (e.table == "filter" and "REJECT" in text):
        return Step("reject", f"rejected: Service {frontend or cur.daddr} has no ready endpoint", where)
    if e.chain == "no-endpoints" and "@clusterips" in text:
        return Step("reject", f"rejected: no Service declares {protocol}/{cur.dport} on cluster IP {cur.daddr}",
                    where)
    if e.chain == "no-endpoints" and verdict == "drop":
        return Step("drop", f"dropped: no Service holds {cur.daddr} (an unallocated service address)", where)
    if ("-drop drop" in text or (e.table == "filter" and " DROP" in text)) and verdict == "drop":
        return Step("drop", f"dropped: Service {frontend or cur.daddr} has externalTrafficPolicy Local and no "
                            "endpoint on this node", where)
    svc = names.entry(target) or (frontend if target.startswith(("pick-", "svc-", "ext-", "scx-", "aff-")) else None)
    if svc:
        short = " (short-circuit: from this node, to every endpoint)" if target.startswith(("scx-", "pick-sc")) \
            else ""
        return Step("service", f"Service {svc} matched {cur.daddr}:{cur.dport}/{protocol}{short}", where)
    if "dnat" in text.lower() and verdict == "accept":
        return Step("dnat", "DNAT to an endpoint", where)
    if "masquerade" in text.lower() and verdict == "accept":
        what = "egress NAT" if e.table == "testbed-egress" else "kube-proxy"
        return Step("masquerade", f"masqueraded to this node's address ({what})", where)
    if e.table == "testbed-policy" or e.chain.startswith("TESTBED-"):
        if "isolated" in text and verdict == "drop":
            side = "egress" if "egress" in text or "isolated-eg" in text else "ingress"
            return Step("drop", f"dropped by NetworkPolicy: its {side} is isolated and no rule admits it", where)
        if rule := names.policy_rule(text):
            return Step("policy", f"admitted by NetworkPolicy {rule}", where)
    return None


def interpret(events: list[Event], names: Names, protocol: str, xt: dict[str, str]) -> Passage:
    """One machine's events as a passage: where the packet came in and went out, what each rule did, and
    how it ended here."""
    out = Passage()
    for e in events:
        if e.kind == "packet":
            p = e.packet
            if out.iif is None and out.oif is None:
                out.iif, out.saddr = p.get("iif"), p.get("saddr")
            if out.daddr and p.get("daddr") and p["daddr"] != out.daddr and out.steps and \
                    out.steps[-1].kind == "dnat":
                out.steps[-1].text = f"DNAT to {p['daddr']}:{p.get('dport')} ({names.pod(p['daddr'])})"
            out.daddr, out.dport = p.get("daddr", out.daddr), p.get("dport", out.dport)
            out.oif = p.get("oif", out.oif)
        elif e.kind == "rule":
            text = xt.get(f"{e.family} {e.table} {e.chain} {e.handle}", e.text)
            step = _rule_step(e, text, out, names, protocol)
            if step:
                out.steps.append(step)
                if step.kind in ("drop", "reject"):
                    out.fate = "dropped" if step.kind == "drop" else "rejected"
        elif e.verdict == "drop" and out.fate == "forwarded":
            out.steps.append(Step("drop", f"dropped by the policy of {e.table} {e.chain}", _where(e)))
            out.fate = "dropped"
    return out
