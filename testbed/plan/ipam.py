"""Address management: node pod ranges (like kube-controller-manager), host-local pod IPs, underlay addresses."""

from __future__ import annotations

import hashlib
import ipaddress
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from testbed.model.topology import UNDERLAY_NODE_OFFSET, UNDERLAY_POOL, underlay_prefix


class Exhausted(Exception):
    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key  # the pod that did not fit, when a pod range ran out


def node_ranges(cidr: IPv4Network | IPv6Network, mask: int, count: int) -> list:
    """The i-th node gets the i-th range, in order, as the node IPAM controller hands them out."""
    gen = cidr.subnets(new_prefix=mask)
    return [next(gen) for _ in range(count)]


def gateway(subnet: IPv4Network | IPv6Network) -> IPv4Address | IPv6Address:
    """The node bridge's address: the first host of its range (what the bridge CNI plugin picks)."""
    return subnet[1]


def vtep(subnet: IPv4Network | IPv6Network) -> IPv4Address | IPv6Address:
    """The overlay device's address: the range's network address, as Flannel gives it."""
    return subnet[0]


def v4_int(ip: str) -> int:
    """An IPv4 address as an integer: ipaddress's parser, which checks every octet's form, costs ten times as
    much, and a lab of 10,000 pods asks it for every pod's address on every sync."""
    a, b, c, d = ip.split(".")
    return (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)


def allocate(subnet: IPv4Network, taken: dict[str, str], wanted: list[str],
             reserved: set[str] | None = None) -> dict[str, str]:
    """Host-local IPAM: keep every wanted key's address, give new keys the lowest free one; unwanted keys free
    theirs. Skips the network address, the gateway, the broadcast address and `reserved` (addresses of this
    range held by pods that moved to other nodes). A kept address may lie outside the range (a moved pod)."""
    keep = {k: ip for k, ip in taken.items() if k in wanted}
    used = {v4_int(ip) for ip in [*keep.values(), *(reserved or ())]}
    first, last = int(subnet.network_address) + 2, int(subnet.broadcast_address) - 1
    out = dict(keep)
    cursor = first
    for k in wanted:
        if k in out:
            continue
        while cursor in used:
            cursor += 1
        if cursor > last:
            raise Exhausted(f"node range {subnet} has no free address left for {k}", k)
        out[k] = str(IPv4Address(cursor))
        used.add(cursor)
    return out


def capacity(subnet: IPv4Network) -> int:
    """Pod addresses in a node range: all but the network, gateway and broadcast addresses."""
    return max(subnet.num_addresses - 3, 0)


def mirror_v6(v4: str, subnet4: IPv4Network, subnet6: IPv6Network) -> str:
    """The pod's IPv6 address takes the same offset in the node's v6 range: 10.244.1.7 ↔ fd00:10:244:1::7."""
    offset = int(IPv4Address(v4)) - int(subnet4.network_address)
    return str(subnet6[offset])


def underlay_address(cidr: IPv4Network, index: int) -> IPv4Address:
    return cidr[UNDERLAY_NODE_OFFSET + index]


def free_underlay(used: list[str], nodes: int = 1) -> IPv4Network:
    """The first range of the pool that no other lab holds, so labs side by side never share addresses: a /24,
    or a wider one for a lab of more than 244 nodes."""
    taken = [ipaddress.ip_network(u) for u in used]
    prefix = underlay_prefix(nodes)
    for candidate in UNDERLAY_POOL.subnets(new_prefix=prefix):
        if not any(candidate.overlaps(t) for t in taken):
            return candidate
    raise Exhausted(f"every underlay /{prefix} in {UNDERLAY_POOL} is taken by a lab")


def vtep_mac(lab: str, node: str) -> str:
    """A stable, locally administered unicast MAC per node, so peers' neighbour entries are pure planning."""
    raw = bytearray(hashlib.sha256(f"{lab}/{node}".encode()).digest()[:6])
    raw[0] = (raw[0] | 0x02) & 0xFE
    return ":".join(f"{b:02x}" for b in raw)
