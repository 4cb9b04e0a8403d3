"""Network-namespace primitives on raw syscalls (stdlib only), shared by the host and the node agent.

Python 3.11 has no os.setns/os.unshare. Everything works on the calling *thread* (/proc/thread-self), so it is
safe in a multi-threaded host process: CLONE_NEWNET is per thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_SHARED = 1 << 20
MNT_DETACH = 2

libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def self_fd() -> int:
    """An fd for the calling thread's current netns."""
    return os.open("/proc/thread-self/ns/net", os.O_RDONLY)


def setns(fd: int, kind: int = CLONE_NEWNET, what: str = "net") -> None:
    _check(libc.setns(fd, kind), f"setns {what}")


@contextlib.contextmanager
def entered(target: str | int) -> Iterator[None]:
    """Run the body in another netns (a path or an fd), then return. Sockets made inside stay there."""
    saved = self_fd()
    fd = os.open(target, os.O_RDONLY) if isinstance(target, str) else target
    try:
        setns(fd)
        try:
            yield
        finally:
            setns(saved)
    finally:
        os.close(saved)
        if isinstance(target, str):
            os.close(fd)


def stat(pid: int) -> list[str]:
    """A process's /proc/PID/stat after its command's name (which may hold spaces): [0] its state, [1] its
    parent, [19] its start time."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def start_time(pid: int) -> str:
    """With its PID, what tells a process from a later one the kernel gives the same PID."""
    return stat(pid)[19]


def ancestor_outside(kind: str) -> int | None:
    """The nearest ancestor of this process in another namespace of kind ("net", "mnt"...) than its own: from a
    container that shares the host's PID namespace, the engine's shim, which runs in the host's."""
    mine = os.readlink(f"/proc/self/ns/{kind}")
    pid = os.getpid()
    while pid > 1:
        pid = int(stat(pid)[1])  # its parent
        if pid > 0 and os.readlink(f"/proc/{pid}/ns/{kind}") != mine:
            return pid
    return None


def is_mount_point(path: str) -> bool:
    """From mountinfo: os.path.ismount misses bind mounts of a folder onto itself (same device as the parent)."""
    real = os.path.realpath(path)
    with open("/proc/thread-self/mountinfo") as f:
        return any(line.split()[4] == real for line in f)


def ensure_run_dir(run_dir: str) -> None:
    """Make run_dir a shared mount point, as `ip netns add` does, so netns mounts propagate to `ip netns exec`."""
    os.makedirs(run_dir, exist_ok=True)
    if is_mount_point(run_dir):
        return
    _check(libc.mount(run_dir.encode(), run_dir.encode(), None, MS_BIND | MS_REC, None), "bind mount")
    _check(libc.mount(b"none", run_dir.encode(), None, MS_SHARED | MS_REC, None), "make shared")


def create_named(path: str) -> None:
    """Create a new netns pinned at path (like `ip netns add`); the caller stays in its own netns."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444)
    os.close(fd)
    saved = self_fd()
    try:
        _check(libc.unshare(CLONE_NEWNET), "unshare")
        try:
            _check(libc.mount(b"/proc/thread-self/ns/net", path.encode(), None, MS_BIND, None), "bind netns")
        finally:
            setns(saved)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    finally:
        os.close(saved)


def remove_named(path: str) -> None:
    """Unpin a named netns; the kernel frees it once no socket or process holds it. Missing is fine."""
    libc.umount2(path.encode(), MNT_DETACH)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def ipv6_on(quiet: str = "") -> None:
    """IPv6 on in the calling thread's netns, read first: the write retries its syscall until it gets the RTNL
    lock, spinning while other agents hold it. quiet: a device (not up yet) that sends no duplicate-address
    probe and no router solicitation: a pod's bridge floods each to every other pod on the node, through
    br_netfilter, a cost that grows with the square of a node's pods; the lab gives its addresses and routes."""
    with open("/proc/sys/net/ipv6/conf/all/disable_ipv6") as f:
        off = f.read().strip() != "0"
    if off:
        write_sysctl("net.ipv6.conf.all.disable_ipv6", 0)
    for knob in ("accept_dad", "router_solicitations") if quiet else ():
        write_sysctl(f"net.ipv6.conf.{quiet}.{knob}", 0)


def write_sysctl(name: str, value: str | int) -> None:
    """Write a sysctl of the calling thread's netns (net.* under /proc/sys resolves per thread)."""
    with open("/proc/sys/" + name.replace(".", "/"), "w") as f:
        f.write(str(value))
