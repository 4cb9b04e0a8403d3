"""pyroute2 handles into a node's or the fabric's network namespace, opened from the host."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from testbed.agent import nsutil

if TYPE_CHECKING:
    from testbed.agent.iproute import IPRoute

HOST_NETNS_DIR = "/run/netns"


@contextlib.contextmanager
def ipr(path: str) -> Iterator[IPRoute]:
    """An IPRoute bound to the netns at path: the socket is made inside it, then this thread returns home."""
    from testbed.agent.iproute import IPRoute

    with nsutil.entered(path):
        handle = IPRoute()
    try:
        yield handle
    finally:
        handle.close()


def ensure_named(name: str) -> str:
    """A named netns on the host (as `ip netns add`), owned by the project; returns its path."""
    nsutil.ensure_run_dir(HOST_NETNS_DIR)
    path = os.path.join(HOST_NETNS_DIR, name)
    if not os.path.exists(path):
        nsutil.create_named(path)
    return path


def one(handle: IPRoute, ifname: str) -> int | None:
    found = handle.link_lookup(ifname=ifname)
    return found[0] if found else None


IFA_F_NODAD = 0x02
RT_SCOPE_UNIVERSE = 0


def sync_addresses(handle: IPRoute, index: int, wanted: list[tuple[str, int]], link_local: bool = True) -> None:
    """Make a link's global addresses exactly `wanted` ((address, prefix length) pairs): re-syncing after a
    change of plan must not leave the old ones behind. IPv6 addresses skip duplicate detection. Without
    link_local, the link's link-local addresses are another owner's (NodeLocal DNSCache's on the loopback)."""
    want = {(ipaddress.ip_address(a).compressed, p) for a, p in wanted}
    for msg in handle.get_addr(index=index):
        address = ipaddress.ip_address(msg.get_attr("IFA_ADDRESS"))
        have = (address.compressed, msg["prefixlen"])
        if msg["scope"] == RT_SCOPE_UNIVERSE and have not in want and (link_local or not address.is_link_local):
            handle.addr("del", index=index, address=have[0], prefixlen=have[1])
    for address, prefix in sorted(want):
        handle.addr("replace", index=index, address=address, prefixlen=prefix,
                    flags=IFA_F_NODAD if ":" in address else 0)


# Route protocol numbers (rtnetlink's rtm_protocol) that mark the routes testbed makes, one per owner, so each
# owner finds and removes exactly its own routes, and `ip route` shows who made a route.
PROTO_HOST_GW = 201  # host-gw: peers' pod ranges via their underlay address
PROTO_ROUTER = 202  # on the router: pod ranges via nodes, in modes where it does not learn them by BGP
PROTO_DEFAULT = 203  # nodes' default route through the router
PROTO_POD = 204  # the agent's host routes to pods that live outside their node's range (bgp mode)
PROTO_NAMES = {PROTO_HOST_GW: "host-gw", PROTO_ROUTER: "static", PROTO_DEFAULT: "default", PROTO_POD: "pod",
               2: "kernel",
               3: "boot", 4: "static", 12: "bird", 186: "bgp"}


def route_dst(route: Any) -> str:
    """A route message's destination as a network ('0.0.0.0/0' for a default route)."""
    dst = route.get_attr("RTA_DST") or ("0.0.0.0" if route["family"] == socket.AF_INET else "::")
    return str(ipaddress.ip_network(f"{dst}/{route['dst_len']}"))


def sync_routes(handle: IPRoute, proto: int, wanted: dict[str, dict[str, object]]) -> tuple[int, int]:
    """Makes the routes of one protocol number exactly `wanted` (destination → route arguments, such as
    gateway or oif); returns (set, removed)."""
    wanted = {str(ipaddress.ip_network(k)): v for k, v in wanted.items()}
    removed = 0
    for family in (socket.AF_INET, socket.AF_INET6):
        for r in handle.get_routes(family=family, table=254):
            if r["proto"] == proto and (dst := route_dst(r)) not in wanted:
                handle.route("del", dst=dst, family=family, proto=proto, table=254)
                removed += 1
    for dst, args in wanted.items():
        family = socket.AF_INET6 if ":" in dst else socket.AF_INET
        handle.route("replace", dst=dst, family=family, proto=proto, table=254, **args)
    return len(wanted), removed
