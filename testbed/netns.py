"""pyroute2 handles into a node's or the fabric's network namespace, opened from the host."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from testbed.agent import nsutil
from testbed.agent.links import one, sync_addresses  # noqa: F401 (host-side code asks them of this module)

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
