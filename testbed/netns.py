"""pyroute2 handles into a node's or the fabric's network namespace, opened from the host."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from pyroute2 import IPRoute

from testbed.agent import nsutil

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
