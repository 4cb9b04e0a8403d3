"""pyroute2 handles into a node's or the fabric's network namespace, opened from the host."""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Iterator

from testbed.agent import nsutil
from testbed.agent.iproute import IPRoute

HOST_NETNS_DIR = "/run/netns"


def node_path(pid: int) -> str:
    return f"/proc/{pid}/ns/net"


@contextlib.contextmanager
def ipr(path: str) -> Iterator[IPRoute]:
    """An IPRoute bound to the netns at path: the socket is made inside it, then this thread returns home."""
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


def sync_addresses(handle: IPRoute, index: int, wanted: list[tuple[str, int]]) -> None:
    """Make a link's global addresses exactly `wanted` ((address, prefix length) pairs): re-syncing after a
    change of plan must not leave the old ones behind. IPv6 addresses skip duplicate detection."""
    want = {(ipaddress.ip_address(a).compressed, p) for a, p in wanted}
    for msg in handle.get_addr(index=index):
        have = (ipaddress.ip_address(msg.get_attr("IFA_ADDRESS")).compressed, msg["prefixlen"])
        if msg["scope"] == RT_SCOPE_UNIVERSE and have not in want:
            handle.addr("del", index=index, address=have[0], prefixlen=have[1])
    for address, prefix in sorted(want):
        handle.addr("replace", index=index, address=address, prefixlen=prefix,
                    flags=IFA_F_NODAD if ":" in address else 0)
