"""Send several rtnetlink requests in one write and collect their acknowledgements.

The requests are packed by nlmsg; what this module adds is a plain netlink socket (cheap to open inside a pod's
netns) and the reading of one ACK per request. Per pod this replaces half a dozen round trips through
pyroute2's request machinery, which cost more than the kernel work itself.
"""

from __future__ import annotations

import socket
import struct

NETLINK_ROUTE = 0
NLMSG_ERROR = 2
HEADER = struct.Struct("=LHHLL")


def count(data: bytes) -> int:
    n, offset = 0, 0
    while offset < len(data):
        offset += (HEADER.unpack_from(data, offset)[0] + 3) & ~3
        n += 1
    return n


def send(sock: socket.socket, data: bytes) -> list[int]:
    """Write the batch, return each request's errno (0 for success), in order."""
    sock.send(data)
    want, errors = count(data), []
    while len(errors) < want:
        buf = sock.recv(65536)
        offset = 0
        while offset < len(buf):
            length, kind, _, _, _ = HEADER.unpack_from(buf, offset)
            if kind == NLMSG_ERROR:
                errors.append(-struct.unpack_from("=i", buf, offset + HEADER.size)[0])
            offset += (length + 3) & ~3
    return errors


def open_socket() -> socket.socket:
    """A netlink socket in the calling thread's current netns."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    sock.bind((0, 0))
    return sock
