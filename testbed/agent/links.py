"""Link helpers shared by the host's netlink handles and the agents' (the fabric machine wires veths with them)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any


def one(handle: Any, ifname: str) -> int | None:
    found = handle.link_lookup(ifname=ifname)
    return found[0] if found else None


IFA_F_NODAD = 0x02
RT_SCOPE_UNIVERSE = 0


def sync_addresses(handle: Any, index: int, wanted: list[tuple[str, int]], link_local: bool = True) -> None:
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


def route_dst(route: Any) -> str:
    """A route message's destination as a network ('0.0.0.0/0' for a default route)."""
    dst = route.get_attr("RTA_DST") or ("0.0.0.0" if route["family"] == socket.AF_INET else "::")
    return str(ipaddress.ip_network(f"{dst}/{route['dst_len']}"))


def sync_routes(handle: Any, proto: int, wanted: dict[str, dict[str, object]]) -> tuple[int, int]:
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


def vxlan_is(handle: Any, index: int, vni: int, port: int, local: str) -> bool:
    """Whether a VXLAN device has this VNI, UDP port and local address (else it is made anew)."""
    info = dict(handle.get_links(index)[0].get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")["attrs"])
    return (info.get("IFLA_VXLAN_ID"), info.get("IFLA_VXLAN_PORT"), info.get("IFLA_VXLAN_LOCAL")) == (vni, port, local)
