"""Send several rtnetlink requests in one write and collect their acknowledgements.

The requests are packed by nlmsg; what this module adds is a plain netlink socket (cheap to open inside a pod's
netns) and the reading of one ACK per request. Per pod this replaces half a dozen round trips through
pyroute2's request machinery, which cost more than the kernel work itself.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

NETLINK_ROUTE = 0
NLMSG_ERROR = 2
HEADER = struct.Struct("=LHHLL")
ERRNO = struct.Struct("=i")


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
    if want:
        for kind, payload in replies(sock):
            if kind == NLMSG_ERROR:
                errors.append(-ERRNO.unpack_from(payload)[0])
                if len(errors) == want:
                    break
    return errors


def replies(sock: socket.socket) -> Iterator[tuple[int, bytes]]:
    """Each message the kernel answers with, as it comes: its type and what follows its header (a dump's
    messages never exceed 32 KiB a read)."""
    while True:
        buf = sock.recv(65536)
        offset = 0
        while offset < len(buf):
            length, kind = HEADER.unpack_from(buf, offset)[:2]
            yield kind, buf[offset + HEADER.size:offset + length]
            offset += (length + 3) & ~3


def open_socket() -> socket.socket:
    """A netlink socket in the calling thread's current netns."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    sock.bind((0, 0))
    return sock
