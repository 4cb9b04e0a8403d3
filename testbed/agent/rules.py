"""Packet-filter rules owned by testbed, applied atomically: each owner (egress NAT, later kube-proxy and policy)
renders its whole table as `nft -f` text on the host (pure, unit-tested); the agent replaces that table in one
transaction the first time, and afterwards applies only the difference (nftdiff), also as one transaction. A
digest skips the work when nothing changed."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from testbed.agent import iptdiff, nftdiff


class Rules:
    def __init__(self) -> None:
        self.digests: dict[tuple[str, str], str] = {}
        self.texts: dict[tuple[str, str], str] = {}  # what each table holds now, for the next difference
        self.ipset_names: set[str] | None = None  # the ipsets this agent made; None until it has looked

    async def iptables(self, v4: str | None, v6: str | None, owner: str = "kube-proxy") -> dict[str, bool]:
        """Each family's tables replaced in one iptables-restore transaction, skipped when unchanged; after the
        first, only the chains that changed are sent (a partial restore, as kube-proxy does)."""
        changed = False
        for tool, text in (("iptables-restore", v4), ("ip6tables-restore", v6)):
            if text is None:
                continue
            key = (tool, owner)
            digest = hashlib.sha256(text.encode()).hexdigest()
            if self.digests.get(key) == digest:
                continue
            old = self.texts.get(key)
            partial = iptdiff.script(old, text) if old else None
            if partial and len(partial) > len(text) // 4:
                partial = None  # a large change: iptables-nft adds chains one by one under --noflush, far slower
            if partial is not None:
                try:
                    if partial:
                        await _run(tool, ["--noflush"], partial)
                except RuntimeError:
                    partial = None  # a full restore below puts the tables right
            if partial is None:
                await _run(tool, [], text)
            self.digests[key], self.texts[key] = digest, text
            changed = True
        return {"changed": changed}

    async def ipsets(self, prefix: str, sets: dict[str, dict[str, Any]], keep: list[str] | None) -> dict[str, int]:
        lines, changed = [], 0
        for name, spec in sets.items():
            digest = hashlib.sha256(repr(sorted(spec.items())).encode()).hexdigest()
            if self.digests.get(("ipset", name)) == digest:
                continue
            tmp = f"{name[:27]}-new"
            head = f"{spec['type']} family {spec['family']}"
            lines += [f"create {name} {head} -exist", f"create {tmp} {head} -exist", f"flush {tmp}",
                      *[f"add {tmp} {m}" for m in spec["members"]], f"swap {tmp} {name}", f"destroy {tmp}"]
            self.digests[("ipset", name)] = digest
            changed += 1
        if lines:
            await _run("ipset", ["restore"], "\n".join(lines) + "\n")
            if self.ipset_names is not None:
                self.ipset_names |= set(sets)
        if keep is None:
            return {"changed": changed, "removed": 0}
        if self.ipset_names is None:  # once per agent: what an earlier agent made is in the kernel, not here
            self.ipset_names = {n for n in (await _run("ipset", ["list", "-n"], "")).split() if n.startswith(prefix)}
        gone = sorted(self.ipset_names - set(keep))
        if gone:
            try:
                await _run("ipset", ["restore"], "".join(f"destroy {n}\n" for n in gone))
            except RuntimeError:
                self.ipset_names = None  # not what was thought: look again on the next sync
                raise
            for n in gone:
                self.digests.pop(("ipset", n), None)
            self.ipset_names -= set(gone)
        return {"changed": changed, "removed": len(gone)}

    @staticmethod
    async def forget_udp(flows: list[list[object]]) -> dict[str, int]:
        """conntrack -D for each UDP flow to a removed endpoint; a flow that is not there is no error."""
        gone = 0
        for service_ip, port, endpoint in flows:
            proc = await asyncio.create_subprocess_exec(
                "conntrack", "-D", "-p", "udp", "--orig-dst", str(service_ip), "--orig-port-dst", str(port),
                "--reply-src", str(endpoint), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            gone += await proc.wait() == 0
        return {"flushed": gone}

    async def apply(self, family: str, table: str, text: str | None) -> dict[str, bool]:
        """Replaces table `family table` with text (a `table` block), or deletes it when text is None. After the
        first sync, only the difference is sent (elements, changed chains), still as one transaction."""
        key = (family, table)
        digest = hashlib.sha256((text or "").encode()).hexdigest()
        if self.digests.get(key) == digest:
            return {"changed": False}
        old = self.texts.get(key)
        small = nftdiff.script(old, text) if old and text else None
        if small is not None:
            try:
                await _nft(["-f", "-"], small)
            except RuntimeError:
                small = None  # whatever went wrong, a full reload below puts the table right
        if small is None:
            # creating the table first makes the delete valid whether or not it existed: one transaction
            await _nft(["-f", "-"], f"table {family} {table}\ndelete table {family} {table}\n" + (text or ""))
        self.digests[key] = digest
        if text:
            self.texts[key] = text
        else:
            self.texts.pop(key, None)
        return {"changed": True}


async def _nft(args: list[str], stdin: str) -> str:
    return await _run("nft", args, stdin)


async def _run(tool: str, args: list[str], stdin: str) -> str:
    proc = await asyncio.create_subprocess_exec(tool, *args, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(stdin.encode())
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} {' '.join(args)}: {err.decode().strip()[-2000:]}")
    return out.decode()
