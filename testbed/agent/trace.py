"""One packet followed through this machine's netfilter (`testbed trace`): a table that marks it for tracing
(`meta nftrace set 1`) as it enters (prerouting) or leaves from here (output), matched by its protocol and its
unique source port (a TCP one only while it opens: its SYN), and `nft monitor trace` writing what every table
and chain did to it (iptables-nft rules are nft rules: one mechanism covers both kube-proxy modes). Stopping
returns those lines, the connection tracking entries of the flow, and the routes its addresses take here."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
from typing import Any

from tenacity import AsyncRetrying, retry_if_result, stop_after_delay, wait_fixed

FAMILY, TABLE = "inet", "testbed-trace"
PRIORITY = -350  # before conntrack (-200) and every other table
NFTRACE_GROUP = 1 << (9 - 1)  # NFNLGRP_NFTRACE, in /proc/net/netlink's group mask
SEEN_WAIT = 3.0  # seconds the machine a traced packet began on waits for its monitor to write (0.4 elsewhere)


def table(protocol: str, sport: int) -> str:
    syn = " tcp flags & (syn | ack) == syn" if protocol == "tcp" else ""
    match = f"meta l4proto {protocol} th sport {sport}{syn} meta nftrace set 1"
    return (f"table {FAMILY} {TABLE} {{\n"
            f"  chain pre {{ type filter hook prerouting priority {PRIORITY}; policy accept; {match}; }}\n"
            f"  chain out {{ type filter hook output priority {PRIORITY}; policy accept; {match}; }}\n}}\n")


class Tracer:
    def __init__(self, nft: Any) -> None:
        self.nft = nft  # runs an nft script (libnftables, or the command)
        self.monitor: asyncio.subprocess.Process | None = None
        self.output: str | None = None

    async def start(self, protocol: str, sport: int) -> dict[str, Any]:
        await self.stop()
        fd, self.output = tempfile.mkstemp(prefix="testbed-trace-")
        with os.fdopen(fd, "wb") as out:
            self.monitor = await asyncio.create_subprocess_exec("nft", "-a", "monitor", "trace", stdout=out,
                                                                stderr=asyncio.subprocess.STDOUT)
        # marked packets before the monitor listens would be traced to no one
        await _until(lambda: _subscribed(self.monitor.pid if self.monitor else 0), 1.0)
        await self.nft(f"table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n" + table(protocol, sport))
        return {"tracing": True}

    async def stop(self, protocol: str = "", sport: int = 0, addresses: list[str] | None = None,
                   seen: bool = False) -> dict[str, Any]:
        with contextlib.suppress(RuntimeError):
            await self.nft(f"table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n")
        if self.output:  # the monitor writes what the kernel queued for it, then the file stops growing (a
            sizes: list[int] = []  # machine the packet never crossed has nothing to write: it waits the longest)
            await _until(lambda: _quiet(self.output or "", sizes), SEEN_WAIT if seen else 0.4)
        if self.monitor is not None and self.monitor.returncode is None:
            self.monitor.terminate()
            await self.monitor.wait()
        self.monitor = None
        lines: list[str] = []
        if self.output:
            with contextlib.suppress(OSError), open(self.output, errors="replace") as f:
                lines = [line.rstrip() for line in f if line.startswith("trace id ")]
            with contextlib.suppress(OSError):
                os.unlink(self.output)
            self.output = None
        flows = await _conntrack(protocol, sport) if sport else []
        tables = sorted({tuple(line.split()[3:5]) for line in lines if line.split()[3] in ("ip", "ip6")})
        return {"lines": lines, "conntrack": flows, "routes": _routes(addresses or []),
                "xt": await _xt_rules(tables)}


async def _until(condition: Any, seconds: float) -> None:
    """Wait until condition() holds, checking every 20 ms, at most seconds (then go on regardless)."""
    retrying = AsyncRetrying(retry=retry_if_result(lambda ok: not ok), stop=stop_after_delay(seconds),
                             wait=wait_fixed(0.02), retry_error_callback=lambda _: False)

    async def check() -> bool:
        return bool(condition())

    await retrying(check)


def _subscribed(pid: int) -> bool:
    """Whether process pid listens to nftables trace events (its netlink socket's groups say so)."""
    with contextlib.suppress(OSError), open("/proc/net/netlink") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if cols[1] == "12" and int(cols[2]) == pid and int(cols[3], 16) & NFTRACE_GROUP:
                return True
    return False


def _quiet(path: str, sizes: list[int]) -> bool:
    """Whether the file holds something and has not grown over the last three looks (60 ms): a monitor slowed
    by a busy machine writes late, and an empty file is no proof that nothing is coming."""
    with contextlib.suppress(OSError):
        sizes.append(os.path.getsize(path))
    return len(sizes) >= 4 and sizes[-1] > 0 and sizes[-1] == sizes[-2] == sizes[-3] == sizes[-4]


async def _conntrack(protocol: str, sport: int) -> list[str]:
    proc = await asyncio.create_subprocess_exec("conntrack", "-L", "-p", protocol, "--orig-port-src", str(sport),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate()
    return [line for line in out.decode(errors="replace").splitlines() if line.strip()]


async def _output(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate()
    return out.decode(errors="replace")


async def _xt_rules(tables: list[tuple[str, ...]]) -> dict[str, str]:
    """iptables rules as iptables-save prints them, by `family table chain handle`: the trace names an
    iptables-nft rule by its handle, and prints its matches as `xt match ...`."""
    out: dict[str, str] = {}
    for family, table in tables:
        save = await _output("iptables-save" if family == "ip" else "ip6tables-save", "-t", table)
        rules: dict[str, list[str]] = {}
        for line in save.splitlines():
            if line.startswith("-A "):
                rules.setdefault(line.split()[1], []).append(line)
        chain, index = "", 0
        for line in (await _output("nft", "-a", "list", "table", family, table)).splitlines():
            text = line.strip()
            if text.startswith("chain "):
                chain, index = text.split()[1], 0
            elif "# handle " in text and chain and not text.startswith("type "):
                handle = text.rsplit("# handle ", 1)[1].split()[0]
                if index < len(rules.get(chain, [])):
                    out[f"{family} {table} {chain} {handle}"] = rules[chain][index]
                index += 1
    return out


def _routes(addresses: list[str]) -> dict[str, Any]:
    """How this machine routes each address: device, gateway, the protocol that made the route (or why
    not)."""
    from testbed.agent.iproute import IPRoute

    out: dict[str, Any] = {}
    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for address in addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            try:
                (r,) = ipr.route("get", dst=address, family=family)[:1]
            except Exception as err:  # no route: the kernel's own words
                out[address] = {"error": str(err.args[-1] if err.args else err)}
                continue
            out[address] = {"dev": names.get(r.get_attr("RTA_OIF")), "gateway": r.get_attr("RTA_GATEWAY"),
                            "type": r["type"], "source": r.get_attr("RTA_PREFSRC")}
    return out
