"""The NetworkPolicy model, evaluated from desired state. Pure: no kernel, no Docker.

One flow (source, destination, port, protocol) is decided as the networking.k8s.io/v1 semantics say:
- egress is decided at the source pod, ingress at the destination pod; both must allow;
- a pod that no policy of a direction selects is open in that direction;
- a selected pod is allowed what the union of the selecting policies' rules allows (an empty rule list
  denies everything; an empty `from`/`to` or `ports` matches everything);
- a named port is resolved against the destination pod's containerPorts;
- replies are always allowed (statefulness), so only the opening direction is decided here;
- a pod reaching itself is always allowed ("Pods cannot block localhost access", and its own IP is local).

`decide` answers `testbed policy explain` and the matrix's expected cells; the installer renders its sets
from `peer_networks` and `rule_ports`, the same functions, so model and datapath share one reading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, collapse_addresses, ip_address, ip_network
from typing import Any, Protocol

from testbed.model.networkpolicy import NetworkPolicy, Peer, PolicyPort

Network = IPv4Network | IPv6Network


class PodLike(Protocol):
    namespace: str
    name: str
    labels: dict[str, str]
    ipv4: str
    ipv6: str | None

    @property
    def ports(self) -> Any: ...


@dataclass
class Side:
    """One direction's decision."""

    direction: str  # egress | ingress
    allowed: bool
    policies: list[str] = field(default_factory=list)  # those that select the pod in this direction
    by: str | None = None  # the rule that admits the flow, "ns/name egress[0]"
    reason: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"direction": self.direction, "allowed": self.allowed, "policies": self.policies, "by": self.by,
                "reason": self.reason}


@dataclass
class Verdict:
    egress: Side
    ingress: Side

    @property
    def allowed(self) -> bool:
        return self.egress.allowed and self.ingress.allowed

    def as_json(self) -> dict[str, Any]:
        return {"allowed": self.allowed, "egress": self.egress.as_json(), "ingress": self.ingress.as_json()}


def selects(policy: NetworkPolicy, pod: PodLike, direction: str) -> bool:
    return (direction.capitalize() in policy.spec.types and policy.namespace == pod.namespace
            and policy.spec.podSelector.matches(pod.labels))


def selected(policy: NetworkPolicy, pods: list[Any], direction: str) -> list[Any]:
    """The pods of pods that policy selects for direction (one match per shared labels dict, as selects)."""
    if direction.capitalize() not in policy.spec.types:
        return []
    seen: dict[int, bool] = {}
    out = []
    for pod in pods:
        if pod.namespace != policy.namespace:
            continue
        key = id(pod.labels)  # a Deployment's replicas share one labels dict: one match for all
        if key not in seen:
            seen[key] = policy.spec.podSelector.matches(pod.labels)
        if seen[key]:
            out.append(pod)
    return out


def ip_block(peer: Peer) -> list[Network]:
    """The block with its exceptions cut out, as a list of networks."""
    assert peer.ipBlock is not None
    nets: list[Network] = [ip_network(peer.ipBlock.cidr)]
    for raw in peer.ipBlock.except_:
        cut = ip_network(raw)
        nets = [part for net in nets for part in (net.address_exclude(cut) if cut.subnet_of(net)  # type: ignore
                                                   else [net] if not net.subnet_of(cut) else [])]  # type: ignore
    return sorted(nets, key=lambda n: (n.version, n))


def peer_pods(peer: Peer, policy_ns: str, pods: list[Any], namespaces: dict[str, dict[str, str]]) -> list[Any]:
    """The pods a selector peer matches: podSelector within the policy's namespace, namespaceSelector across
    namespaces, both together as AND."""
    out = []
    seen: dict[tuple[str, int], bool] = {}  # a Deployment's replicas share one labels dict: one match for all
    for pod in pods:
        key = (pod.namespace, id(pod.labels))
        if key not in seen:
            if peer.namespaceSelector is None:
                in_ns = pod.namespace == policy_ns
            else:
                in_ns = peer.namespaceSelector.matches(namespaces.get(pod.namespace, {}))
            seen[key] = in_ns and (peer.podSelector is None or peer.podSelector.matches(pod.labels))
        if seen[key]:
            out.append(pod)
    return out


def peer_networks(peers: list[Peer], policy_ns: str, pods: list[Any], namespaces: dict[str, dict[str, str]],
                  version: int, memo: dict[frozenset[str], tuple[Network, ...]] | None = None) -> list[Network] | None:
    """Every address the peers match, in one family (None: any address, an empty `from`/`to`). memo: pod
    address sets already collapsed, for a caller that asks for many rules (a sync: rules on many nodes, in both
    plans, select the same peers, a tier or a namespace; collapsing is ipaddress's slowest work)."""
    if not peers:
        return None
    blocks: list[Network] = []
    hosts: set[str] = set()
    for peer in peers:
        if peer.ipBlock is not None:
            blocks += [n for n in ip_block(peer) if n.version == version]
        else:
            for pod in peer_pods(peer, policy_ns, pods, namespaces):
                if ip := (pod.ipv4 if version == 4 else pod.ipv6):
                    hosts.add(ip)
    key = frozenset(hosts)
    collapsed = None if memo is None else memo.get(key)
    if collapsed is None:
        collapsed = tuple(collapse_addresses(ip_network(ip) for ip in key))  # type: ignore[arg-type]
        if memo is not None:
            memo[key] = collapsed
    return list(collapse_addresses([*blocks, *collapsed])) if blocks else list(collapsed)  # type: ignore


def _named(pod: Any, name: str, protocol: str) -> int | None:
    return next((p.port for p in (pod.ports if pod is not None else []) if p.name == name
                 and p.protocol == protocol), None)


def rule_ports(ports: list[PolicyPort], dst_pod: Any) -> list[tuple[str, int, int]] | None:
    """A rule's ports as (protocol, first, last), named ports resolved on the destination pod (a named port
    matches nothing on a destination that is not a pod). None: every port and protocol."""
    if not ports:
        return None
    out = []
    for p in ports:
        if p.port is None:
            out.append((p.protocol, 1, 65535))
        elif isinstance(p.port, str):
            number = _named(dst_pod, p.port, p.protocol)
            if number is not None:
                out.append((p.protocol, number, number))
        else:
            out.append((p.protocol, p.port, p.endPort or p.port))
    return out


def _peer_admits(peers: list[Peer], policy_ns: str, other: Any, other_ip: str,
                 namespaces: dict[str, dict[str, str]]) -> bool:
    if not peers:
        return True
    addr = ip_address(other_ip)
    for peer in peers:
        if peer.ipBlock is not None:
            if any(addr in n for n in ip_block(peer) if n.version == addr.version):
                return True
        elif other is not None and peer_pods(peer, policy_ns, [other], namespaces):
            return True
    return False


def _side(direction: str, policies: list[NetworkPolicy], pod: Any, other: Any, other_ip: str, dst_pod: Any,
          port: int, protocol: str, namespaces: dict[str, dict[str, str]]) -> Side:
    if pod is None:
        return Side(direction, True, reason="not a pod: no policy applies")
    chosen = [p for p in policies if selects(p, pod, direction)]
    names = [p.key for p in chosen]
    if not chosen:
        return Side(direction, True, names, reason=f"no policy selects {pod.namespace}/{pod.name} for "
                                                   f"{direction}")
    for pol in chosen:
        rules = pol.spec.egress if direction == "egress" else pol.spec.ingress
        for i, rule in enumerate(rules):
            peers = rule.to if direction == "egress" else rule.from_
            if not _peer_admits(peers, pol.namespace, other, other_ip, namespaces):
                continue
            ranges = rule_ports(rule.ports, dst_pod)
            if ranges is None or any(proto == protocol and lo <= port <= hi for proto, lo, hi in ranges):
                return Side(direction, True, names, f"{pol.key} {direction}[{i}]", "a rule admits the flow")
    return Side(direction, False, names, reason="selected, and no rule of these policies admits the flow")


def decide(policies: list[NetworkPolicy], namespaces: dict[str, dict[str, str]], src: Any, src_ip: str,
           dst: Any, dst_ip: str, port: int, protocol: str) -> Verdict:
    """src/dst are pods (or None for an address outside the pods); protocol is TCP, UDP or SCTP."""
    protocol = protocol.upper()
    if src is not None and dst is not None and (src.namespace, src.name) == (dst.namespace, dst.name):
        why = "a pod's traffic to itself never leaves it: NetworkPolicy cannot block it"
        return Verdict(Side("egress", True, reason=why), Side("ingress", True, reason=why))
    return Verdict(_side("egress", policies, src, dst, dst_ip, dst, port, protocol, namespaces),
                   _side("ingress", policies, dst, src, src_ip, dst, port, protocol, namespaces))
