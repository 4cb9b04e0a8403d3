"""rtnetlink dumps read by hand, for what a sync compares by the hundred: a VXLAN device's routes, neighbours and
FDB entries (199 of each on every node of a 200-node lab). pyroute2 turns every attribute of every message into
objects, about 20 ms a node for these three dumps, most of a re-sync's pod-network step; these read only the
attributes the comparison needs (`tests/unit/test_nldump.py` checks them against pyroute2's in a scratch netns)."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

from testbed.agent import nlbatch
from testbed.agent.nlmsg import (
    AF_BRIDGE,
    HEADER,
    NDA_DST,
    NDA_LLADDR,
    NDMSG,
    NLM_F_REQUEST,
    RT_TABLE_MAIN,
    RTA_DST,
    RTA_GATEWAY,
    RTA_OIF,
    RTMSG,
)

RTM_GETROUTE, RTM_GETNEIGH = 26, 30
NLM_F_DUMP = 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTA_TABLE = 15
_ATTR = struct.Struct("=HH")
_I32 = struct.Struct("=i")
__all__ = ["AF_BRIDGE", "gateway_routes", "neighbours"]


def _dump(kind: int, body: bytes) -> Iterator[bytes]:
    """Each answer's payload (what follows its netlink header), until the dump is done."""
    with nlbatch.open_socket() as sock:
        sock.send(HEADER.pack(HEADER.size + len(body), kind, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + body)
        for mtype, payload in nlbatch.replies(sock):
            if mtype == NLMSG_DONE:
                return
            if mtype != NLMSG_ERROR:
                yield payload
            elif errno := -nlbatch.ERRNO.unpack_from(payload)[0]:
                raise OSError(errno, f"rtnetlink dump {kind}")


def _attrs(payload: bytes, start: int) -> dict[int, bytes]:
    out, offset = {}, start
    while offset + _ATTR.size <= len(payload):
        size, kind = _ATTR.unpack_from(payload, offset)
        if size < _ATTR.size:
            break
        out[kind & 0x3FFF] = payload[offset + _ATTR.size:offset + size]  # without the nested/byte-order flags
        offset += (size + 3) & ~3
    return out


def _address(family: int, raw: bytes | None) -> str | None:
    return socket.inet_ntop(family, raw) if raw else None


def gateway_routes(family: int, oif: int) -> list[str]:
    """The main table's routes through a gateway out of device oif: their destinations, `ADDRESS/LENGTH`."""
    out = []
    for payload in _dump(RTM_GETROUTE, RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)):
        rtm_family, dst_len, _, _, table = RTMSG.unpack_from(payload)[:5]
        attrs = _attrs(payload, RTMSG.size)
        if RTA_TABLE in attrs:
            table = _I32.unpack(attrs[RTA_TABLE])[0]
        if table != RT_TABLE_MAIN or RTA_GATEWAY not in attrs or RTA_DST not in attrs or \
                RTA_OIF not in attrs or _I32.unpack(attrs[RTA_OIF])[0] != oif:
            continue
        out.append(f"{_address(rtm_family, attrs[RTA_DST])}/{dst_len}")
    return out


def neighbours(family: int, ifindex: int) -> list[tuple[str | None, str | None]]:
    """The neighbour entries on device ifindex: (destination, link-layer address). With AF_BRIDGE, its forwarding
    database: (the remote's address, MAC)."""
    out = []
    for payload in _dump(RTM_GETNEIGH, NDMSG.pack(family, 0, 0, 0, 0, 0, 0)):
        ndm_family, _, _, index = NDMSG.unpack_from(payload)[:4]
        if index != ifindex:
            continue
        attrs = _attrs(payload, NDMSG.size)
        dst = attrs.get(NDA_DST)
        dst_family = socket.AF_INET6 if dst is not None and len(dst) == 16 else socket.AF_INET
        mac = attrs.get(NDA_LLADDR)
        out.append((_address(dst_family if ndm_family == AF_BRIDGE else ndm_family, dst),
                    mac.hex(":") if mac else None))
    return out
