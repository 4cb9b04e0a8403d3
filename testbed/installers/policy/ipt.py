"""NetworkPolicy enforcement for labs whose kube-proxy runs in iptables mode: the same per-node view as the
nftables table, rendered as ipsets (peers, targets, and the addresses of each protocol and port range) and one
`iptables-restore` of the mangle table per family. kube-proxy owns nat and filter, so the policy chains hang
off mangle FORWARD, which runs after kube-proxy's DNAT (nat PREROUTING) like the nftables table does.

Rules mirror nft.py: established flows and a pod reaching itself pass; TESTBED-EGRESS returns when a rule
admits the flow and drops it from an isolated source; TESTBED-INGRESS accepts or drops for the destination.
Each rule is one iptables rule per (protocol, port range), matching ipsets, so the rule count follows the
policies' rules, not their pods."""

from __future__ import annotations

from typing import Any

from testbed.installers.policy.view import PolicyView, RuleView

PREFIX = "tb"  # every ipset testbed makes for policy starts with it (ipset names stop at 31 characters)
FAMILY = {4: "inet", 6: "inet6"}
ANY = {4: ["0.0.0.0/1", "128.0.0.0/1"], 6: ["::/1", "8000::/1"]}  # hash:net cannot hold a /0
ND = ["neighbour-solicitation", "neighbour-advertisement", "router-solicitation", "router-advertisement"]


def _members(addrs: list[str], family: int) -> list[str]:
    out: list[str] = []
    for a in addrs:
        out += ANY[family] if a in ("0.0.0.0/0", "::/0") else [a]
    return out


def _group(tuples: list[str]) -> dict[tuple[str, str], list[str]]:
    """'addr . proto . ports' → {(proto, ports): [addr]}."""
    out: dict[tuple[str, str], list[str]] = {}
    for t in tuples:
        addr, proto, ports = (x.strip() for x in t.split(" . "))
        out.setdefault((proto, ports.replace("-", ":")), []).append(addr)
    return out


class _Sets:
    def __init__(self) -> None:
        self.sets: dict[str, dict[str, Any]] = {}

    def add(self, name: str, family: int, members: list[str]) -> str:
        name = f"{PREFIX}{name}"
        self.sets[name] = {"type": "hash:net", "family": FAMILY[family], "members": _members(members, family)}
        return name


def _rule(r: RuleView, sets: _Sets) -> list[str]:
    chain = "TESTBED-EGRESS" if r.direction == "egress" else "TESTBED-INGRESS"
    verdict = "RETURN" if r.direction == "egress" else "ACCEPT"
    own, other = ("src", "dst") if r.direction == "egress" else ("dst", "src")
    base = f"{r.id}-{r.family}"
    match = ""
    if r.peers is not None:
        match += f"-m set --match-set {sets.add(f'{base}-peers', r.family, r.peers)} {other} "
    if r.tuples is None or r.direction == "egress":
        match = f"-m set --match-set {sets.add(f'{base}-t', r.family, r.targets)} {own} " + match
    if r.tuples is None:
        return [f"-A {chain} {match}-j {verdict}"]
    out = []
    for i, tuples in enumerate(r.tuples):
        for j, ((proto, ports), addrs) in enumerate(sorted(_group(tuples).items())):
            name = sets.add(f"{base}-p{i}g{j}", r.family, addrs)
            out.append(f"-A {chain} {match}-m set --match-set {name} dst -p {proto} --dport {ports} -j {verdict}")
    return out


def render(view: PolicyView) -> tuple[dict[str, dict[str, Any]], dict[int, str]]:
    """The ipsets, and the mangle table of each family as iptables-restore input."""
    sets = _Sets()
    tables = {}
    for f in view.families:
        rules = [r for r in view.rules if r.family == f]
        lines = [*(_rule(r, sets) for r in rules)]
        # a pod reaching itself: one rule per local pod, as this kernel has no hash:net,net sets
        head = ["-A TESTBED-POLICY -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                *[f"-A TESTBED-POLICY -s {ip} -d {ip} -j ACCEPT" for ip in view.local[f]]]
        if f == 6:
            head += [f"-A TESTBED-POLICY -p ipv6-icmp --icmpv6-type {t} -j ACCEPT" for t in ND]
        iso_out = sets.add(f"isolated-eg-{f}", f, view.isolated["egress"][f])
        iso_in = sets.add(f"isolated-in-{f}", f, view.isolated["ingress"][f])
        body = [*head, "-A TESTBED-POLICY -j TESTBED-EGRESS", "-A TESTBED-POLICY -j TESTBED-INGRESS",
                *(x for r in lines for x in r if x.startswith("-A TESTBED-EGRESS")),
                f"-A TESTBED-EGRESS -m set --match-set {iso_out} src -j DROP",
                *(x for r in lines for x in r if x.startswith("-A TESTBED-INGRESS")),
                f"-A TESTBED-INGRESS -m set --match-set {iso_in} dst -j DROP"]
        tables[f] = "\n".join(["*mangle", *[f":{c} ACCEPT [0:0]" for c in BUILTIN],
                               *[f":{c} - [0:0]" for c in CHAINS], "-A FORWARD -j TESTBED-POLICY", *body,
                               "COMMIT"]) + "\n"
    return sets.sets, tables


BUILTIN = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")
CHAINS = ("TESTBED-POLICY", "TESTBED-EGRESS", "TESTBED-INGRESS")


def empty() -> str:
    """The mangle table as a node starts."""
    return "\n".join(["*mangle", *[f":{c} ACCEPT [0:0]" for c in BUILTIN], "COMMIT"]) + "\n"
