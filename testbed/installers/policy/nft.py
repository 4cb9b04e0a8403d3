"""NetworkPolicy enforcement, rendered: one table per node, `inet testbed-policy`, applied as one transaction.

It hooks forward at filter priority, after kube-proxy's DNAT (prerouting, dstnat), so a flow to a ClusterIP,
NodePort or LoadBalancer IP is judged by its backend pod; br_netfilter passes bridged (same-node) traffic
through the same hook. Established and related flows pass first (replies are always allowed). Then the
`egress` chain returns when a rule admits the flow and drops it when its source is an isolated pod of this
node; the `ingress` chain does the same for the destination. Each rule is one nft rule over sets (peers,
targets, address . protocol . port tuples), so the table holds three chains however many policies there are:
nft 1.0.6 slows down with the number of chains, not with the number of set elements.
"""

from __future__ import annotations

import hashlib

from testbed.installers.policy.view import PolicyView, RuleView

FAMILY, TABLE = "inet", "testbed-policy"
IP = {4: "ip", 6: "ip6"}
ADDR = {4: "ipv4_addr", 6: "ipv6_addr"}
ND = "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } accept"


def _set(name: str, key: str, elements: list[str], flags: str = " flags interval;") -> str:
    body = f" elements = {{ {', '.join(elements)} }};" if elements else ""
    return f"  set {name} {{ type {key};{flags}{body} }}"


class Sets:
    """The table's sets, one per distinct content (as Calico shares an ipset among the rules that select the
    same peers): a name follows its key and elements, so rules alike in their peers, targets or ports load one
    set; 200 policies over 3,000 pods load tens of thousands of elements fewer on every node."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[tuple[str, tuple[str, ...]], str] = {}

    def add(self, key: str, elements: list[str]) -> str:
        content = (key, tuple(elements))
        if content not in self.names:
            digest = hashlib.blake2b(repr(content).encode(), digest_size=8).hexdigest()
            self.names[content] = name = f"s-{digest}"
            self.lines.append(_set(name, key, elements))
        return self.names[content]


def _rule(r: RuleView, sets: Sets) -> list[str]:
    # the rule's id as its comment: its sets are shared, and `trace` names the policy rule from this text
    ip, verdict = IP[r.family], ("return" if r.direction == "egress" else "accept") + f' comment "{r.id}"'
    own = "saddr" if r.direction == "egress" else "daddr"
    other = "daddr" if own == "saddr" else "saddr"
    match = ""
    if r.peers is not None:
        match += f"{ip} {other} @{sets.add(ADDR[r.family], r.peers)} "
    if r.tuples is None:
        return [f"{ip} {own} @{sets.add(ADDR[r.family], r.targets)} {match}{verdict}"]
    key = f"{ADDR[r.family]} . inet_proto . inet_service"
    out = []
    if r.direction == "egress":
        match = f"{ip} saddr @{sets.add(ADDR[r.family], r.targets)} " + match
    for tuples in r.tuples:
        out.append(f"{match}{ip} daddr . meta l4proto . th dport @{sets.add(key, tuples)} {verdict}")
    return out


def render(view: PolicyView) -> str:
    shared = Sets()
    chains: dict[str, list[str]] = {"egress": [], "ingress": []}
    for r in view.rules:
        chains[r.direction] += _rule(r, shared)
    sets = shared.lines
    for f in view.families:  # a pod reaching itself, through its own Service (hairpin): never blocked
        pods = view.local[f]
        sets.append(_set(f"self-{f}", f"{ADDR[f]} . {ADDR[f]}", [f"{ip} . {ip}" for ip in pods], flags=""))
    for direction, short in (("egress", "saddr"), ("ingress", "daddr")):
        for f in view.families:
            sets.append(_set(f"isolated-{direction}-{f}", ADDR[f], view.isolated[direction][f]))
            chains[direction].append(f"{IP[f]} {short} @isolated-{direction}-{f} drop")
    lines = [f"table {FAMILY} {TABLE} {{", *sets,
             *[f"  chain {name} {{ {'; '.join(rules)}; }}" for name, rules in chains.items()],
             "  chain pod-flows {",
             "    type filter hook forward priority filter; policy accept;",
             "    ct state established,related accept",
             *[f"    {IP[f]} saddr . {IP[f]} daddr @self-{f} accept" for f in view.families],
             f"    {ND}",
             "    jump egress",
             "    jump ingress",
             "  }", "}"]
    return "\n".join(lines) + "\n"


__all__ = ["FAMILY", "TABLE", "render"]
