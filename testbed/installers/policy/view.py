"""The NetworkPolicies reduced to what one node enforces, as Calico's felix reduces them: for each rule of each
policy that selects a pod on this node, the set of peer addresses, the set of this node's target pods, and the
(address . protocol . port range) tuples when the rule names ports. Peers and named ports are read through
the evaluator (testbed.policy.evaluate), so the datapath and `policy explain` share one reading. Pure."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from ipaddress import ip_network
from typing import Any

from testbed.model.networkpolicy import NetworkPolicy
from testbed.plan.cluster import Plan, PodPlan
from testbed.policy.evaluate import Network, peer_networks, rule_ports, selected


@dataclass
class RuleView:
    """One rule of one policy on one node, in one family. None means 'any'."""

    id: str
    direction: str  # egress | ingress
    family: int
    targets: list[str]  # this node's pods the policy selects
    peers: list[str] | None  # source (ingress) or destination (egress) networks
    # with ports: sets of 'addr . proto . ports' (an interval set refuses overlaps, so numbered ports and
    # named ones resolved per destination pod are two sets); None for every port
    tuples: list[list[str]] | None


@dataclass
class PolicyView:
    node: str
    families: list[int]
    isolated: dict[str, dict[int, list[str]]] = field(default_factory=dict)  # direction → family → pod IPs
    local: dict[int, list[str]] = field(default_factory=dict)  # family → this node's pod IPs
    rules: list[RuleView] = field(default_factory=list)


def _ip(pod: PodPlan, family: int) -> str | None:
    return pod.ipv4 if family == 4 else pod.ipv6


def _net(net: Network) -> str:
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def _ports(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _merge(ranges: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Overlapping ranges of one protocol merged: interval sets refuse overlapping elements."""
    out: list[tuple[str, int, int]] = []
    for proto, lo, hi in sorted(set(ranges)):
        if out and out[-1][0] == proto and lo <= out[-1][2] + 1:
            out[-1] = (proto, out[-1][1], max(hi, out[-1][2]))
        else:
            out.append((proto, lo, hi))
    return out


def _tuples(addr: str, ranges: list[tuple[str, int, int]]) -> list[str]:
    return [f"{addr} . {proto.lower()} . {_ports(lo, hi)}" for proto, lo, hi in _merge(ranges)]


def rule_id(policy: NetworkPolicy, direction: str, index: int) -> str:
    digest = hashlib.sha256(policy.key.encode()).hexdigest()[:10]
    return f"p{digest}-{direction[:2]}{index}"


def node_view(plan: Plan, node: str, policies: list[NetworkPolicy], shared: dict[Any, Any] | None = None) -> PolicyView:
    """shared: what is the same on every node (each policy's selected pods by node, each rule's peers), worked
    out once per sync: pass one dict for all nodes of one plan. Its "collapsed" entry (peer address sets) may be
    one dict shared with another plan's."""
    families = [4, 6] if plan.topology.networking.dualStack else [4]
    view = PolicyView(node, families)
    local = plan.pods_on(node)
    shared = {} if shared is None else shared
    view.local = {f: sorted({ip for p in local if (ip := _ip(p, f))}) for f in families}
    chosen = {(i, d): _chosen(shared, plan, i, pol, d).get(node, []) for i, pol in enumerate(policies)
              for d in ("ingress", "egress")}
    for direction in ("ingress", "egress"):
        view.isolated[direction] = {f: sorted({ip for (_, d), pods in chosen.items() if d == direction
                                               for p in pods if (ip := _ip(p, f))}) for f in families}
    for n, pol in enumerate(policies):
        for direction in ("ingress", "egress"):
            targets = chosen[(n, direction)]
            if not targets:
                continue
            rules: list[Any] = pol.spec.ingress if direction == "ingress" else pol.spec.egress
            for i, rule in enumerate(rules):
                peers = rule.from_ if direction == "ingress" else rule.to
                for family in families:
                    key = ("peers", pol.key + direction, i, family)
                    if key not in shared:
                        nets = peer_networks(peers, pol.namespace, plan.pods, plan.namespaces, family,
                                             shared.setdefault("collapsed", {}))
                        shared[key] = (nets, None if nets is None else [_net(n) for n in nets])
                    nets, names = shared[key]
                    view.rules.append(_rule(plan, rule_id(pol, direction, i), direction, family, targets, nets,
                                            names, rule.ports))
    return view


def _chosen(shared: dict[Any, Any], plan: Plan, index: int, policy: NetworkPolicy,
            direction: str) -> dict[str, list[PodPlan]]:
    """The pods the policy selects for direction, by node: selected once over every pod, not once a node."""
    key = ("chosen", index, direction)
    if key not in shared:
        by_node: dict[str, list[PodPlan]] = {}
        for pod in selected(policy, plan.pods, direction):
            by_node.setdefault(pod.node, []).append(pod)
        shared[key] = by_node
    return shared[key]


def _rule(plan: Plan, rid: str, direction: str, family: int, targets: list[PodPlan], nets: list[Network] | None,
          peer_list: list[str] | None, ports: list[Any]) -> RuleView:
    mine = [ip for p in targets if (ip := _ip(p, family))]
    if not ports:
        return RuleView(rid, direction, family, mine, peer_list, None)
    tuples: list[str] = []
    named_tuples: list[str] = []
    if direction == "ingress":  # named ports are the target pod's
        for pod in targets:
            ip = _ip(pod, family)
            if ip and (ranges := rule_ports(ports, pod)):
                tuples += _tuples(ip, ranges)
    else:  # named ports are the destination's: each peer pod's own; numbered ones for any peer address
        numbered = rule_ports([p for p in ports if not isinstance(p.port, str)], None) or []
        named = [p for p in ports if isinstance(p.port, str)]
        whole = ["0.0.0.0/0" if family == 4 else "::/0"] if nets is None else peer_list or []
        for addr in whole:
            tuples += _tuples(addr, numbered)
        if named:
            for pod in plan.pods:
                ip = _ip(pod, family)
                if ip and (nets is None or any(ip_network(ip).subnet_of(n) for n in nets)):  # type: ignore
                    named_tuples += _tuples(ip, rule_ports(named, pod) or [])
    sets = [sorted(set(tuples))] + ([sorted(set(named_tuples))] if named_tuples else [])
    return RuleView(rid, direction, family, mine, None if direction == "egress" else peer_list, sets)
