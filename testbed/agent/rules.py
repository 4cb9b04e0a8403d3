"""Packet-filter rules owned by testbed, applied atomically: each owner (egress NAT, later kube-proxy and policy)
renders its whole table as `nft -f` text on the host (pure, unit-tested); the agent replaces that table in one
transaction the first time, and afterwards applies only the difference (nftdiff), also as one transaction. A
digest skips the work when nothing changed.

An owner that tracks its own changes (kube-proxy) sends the difference itself, with a token for what the
table will hold and the token it expects the table to hold now; a table in any other state (this agent is
new, a sync failed, another mode ran) answers `stale`, and the owner sends the whole table.

What the agent remembers is what it did, not what the kernel holds now: with `verify` (every `up`), the kernel
is read and compared with the meant text first (agent/kernel.py), so a table flushed or deleted behind the
agent's back is loaded again; unless every transaction since the agent last wrote or read that table was its
own (the ruleset's generation, agent/nftgen.py, moved by nothing else). What the agent does not remember (it
is new: a machine that just started) is written whole anyway, so the kernel is not read for it."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from testbed.agent import iptdiff, kernel, nftdiff, nftgen
from testbed.agent.libnft import Nft


class Rules:
    def __init__(self) -> None:
        self.digests: dict[tuple[str, str], str] = {}
        self.texts: dict[tuple[str, str], str] = {}  # what each table holds now, for the next difference
        self.ipset_names: set[str] | None = None  # the ipsets this agent made; None until it has looked
        self.tokens: dict[tuple[str, str], str] = {}  # what an owner says a table holds, after its last sync
        self.libnft = Nft.load()  # None without the library: the nft command then
        # the ruleset's generation (agent/nftgen.py) when this agent last looked, and the tables known to hold
        # what it last wrote or read there since: anyone else's transaction moves the generation and empties it
        self.generation: int | None = None
        self.intact: set[tuple[str, str]] = set()

    async def nft(self, script: str) -> str:
        """One nft script, in one transaction (to the tables' checks, a change like anyone else's)."""
        return await self._write(None, self._nft_run(script))

    async def _nft(self, script: str, key: tuple[str, str]) -> str:
        return await self._write(key, self._nft_run(script))

    def _nft_run(self, script: str) -> Awaitable[str]:
        return self.libnft.run(script) if self.libnft else _run("nft", ["-f", "-"], script)

    async def _restore(self, tool: str, args: list[str], text: str, owner: str) -> str:
        """iptables-restore (nft backend): a transaction of the same ruleset."""
        return await self._write((tool, owner), _run(tool, args, text))

    async def _write(self, key: tuple[str, str] | None, work: Awaitable[str]) -> str:
        self._look()
        out = await work
        if key is not None:  # its own change: what it knew of the other tables still holds
            self.generation = nftgen.generation()
            self.intact.add(key)
        return out

    def _look(self) -> None:
        now = nftgen.generation()
        if now is None or now != self.generation:
            self.intact.clear()
        self.generation = now

    async def _holds(self, key: tuple[str, str], compare: Callable[[], Awaitable[dict[str, Any]]]) -> bool:
        """Whether the kernel holds what this agent last made of a table: known without reading the table back
        when no transaction but the agent's own ran since it last looked; read and compared otherwise."""
        self._look()
        if key in self.intact:
            return True
        if (await compare())["match"]:
            self.intact.add(key)
            return True
        return False

    def _forget(self, key: tuple[str, str]) -> None:
        """The text kept for a difference no longer says what the table holds: the next whole text reloads."""
        self.digests.pop(key, None)
        self.texts.pop(key, None)

    async def _patch(self, key: tuple[str, str], base: str | None, token: str | None,
                     run: Callable[[], Awaitable[bool]]) -> dict[str, Any]:
        """Changes tables by what their owner sent, only from the state the owner names (base)."""
        if base is None or self.tokens.get(key) != base:
            return {"changed": False, "stale": True}
        try:
            changed = await run()
        except RuntimeError as e:
            self.tokens.pop(key, None)
            return {"changed": False, "stale": True, "error": str(e)}
        self._token(key, token)
        return {"changed": changed, "stale": False}

    async def patch(self, family: str, table: str, script: str, base: str | None,
                    token: str | None) -> dict[str, Any]:
        async def run() -> bool:
            if script:
                await self._nft(script, (family, table))
            self._forget((family, table))
            return bool(script)

        return await self._patch((family, table), base, token, run)

    async def iptables_patch(self, v4: str | None, v6: str | None, owner: str, base: str,
                             token: str | None) -> dict[str, Any]:
        async def run() -> bool:
            for tool, text in (("iptables-restore", v4), ("ip6tables-restore", v6)):
                if text:
                    await self._restore(tool, ["--noflush"], text, owner)
                self._forget((tool, owner))
            return bool(v4 or v6)

        return await self._patch(("iptables", owner), base, token, run)

    async def iptables(self, v4: str | None, v6: str | None, owner: str = "kube-proxy",
                       token: str | None = None, verify: bool = False) -> dict[str, bool]:
        """Each family's tables replaced in one iptables-restore transaction, skipped when unchanged; after the
        first, only the chains that changed are sent (a partial restore, as kube-proxy does)."""
        changed = False
        self.tokens.pop(("iptables", owner), None)  # until this sync is done, the tables are in no known state
        for tool, text in (("iptables-restore", v4), ("ip6tables-restore", v6)):
            if text is None:
                continue
            key = (tool, owner)
            digest = hashlib.sha256(text.encode()).hexdigest()
            if verify and key in self.digests and \
                    not await self._holds(key, lambda t=tool, x=text: self.compare_iptables(t, x)):
                self._forget(key)
            if self.digests.get(key) == digest:
                continue
            old = self.texts.get(key) if token is None else None  # an owner with tokens sends changes itself
            partial = iptdiff.script(old, text) if old else None
            if partial and len(partial) > len(text) // 4:
                partial = None  # a large change: iptables-nft adds chains one by one under --noflush, far slower
            if partial is not None:
                try:
                    if partial:
                        await self._restore(tool, ["--noflush"], partial, owner)
                except RuntimeError:
                    partial = None  # a full restore below puts the tables right
            if partial is None:  # whole tables: what other programs hold in them stays
                saved = await _run(tool.replace("-restore", "-save"), [], "")
                await self._restore(tool, [], kernel.keep_foreign(saved, text), owner)
            self.digests[key], self.texts[key] = digest, text
            changed = True
        self._token(("iptables", owner), token)
        return {"changed": changed}

    async def ipsets(self, prefix: str, sets: dict[str, dict[str, Any]], keep: list[str] | None,
                     verify: bool = False) -> dict[str, int]:
        if verify and any(("ipset", n) in self.digests for n in sets) and \
                not (await self.compare_ipsets(prefix, sets))["match"]:
            for name in sets:
                self.digests.pop(("ipset", name), None)
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

    async def apply(self, family: str, table: str, text: str | None, token: str | None = None,
                    verify: bool = False) -> dict[str, Any]:
        """Replaces table `family table` with text (a `table` block), or deletes it when text is None. After the
        first sync, only the difference is sent (elements, changed chains), still as one transaction. Says what
        it did: how (diff, whole, deleted) and why a whole table."""
        key = (family, table)
        why = "first sync" if key not in self.texts else "the difference did not apply"
        if verify and key in self.digests and not await self._holds(key, lambda: self.compare_nft(family, table, text)):
            self._forget(key)
            why = "the kernel held something else (read by `up`)"
        digest = hashlib.sha256((text or "").encode()).hexdigest()
        if self.digests.get(key) == digest:
            self._token(key, token)
            return {"changed": False}
        self.tokens.pop(key, None)  # a failure below leaves the table in no known state
        old = self.texts.get(key) if token is None else None  # an owner with tokens sends changes itself
        small = nftdiff.script(old, text) if old and text else None
        if small is not None:
            try:
                await self._nft(small, key)
            except RuntimeError:
                small = None  # whatever went wrong, a full reload below puts the table right
        if small is None:
            # creating the table first makes the delete valid whether or not it existed: one transaction
            await self._nft(f"table {family} {table}\ndelete table {family} {table}\n" + (text or ""), key)
        self.digests[key] = digest
        if text:
            self.texts[key] = text
        else:
            self.texts.pop(key, None)
        self._token(key, token)
        if small is not None:
            return {"changed": True, "how": "diff", "lines": small.count("\n")}
        return {"changed": True, "how": "whole" if text else "deleted", "why": why if text else ""}

    async def compare_nft(self, family: str, table: str, text: str | None) -> dict[str, Any]:
        meant = await kernel.nft_meant(family, table, text) if text else []
        return kernel.compare(await kernel.nft_kernel(family, table), meant)

    @staticmethod
    async def compare_iptables(tool: str, text: str) -> dict[str, Any]:
        tables = kernel.tables_of(text)
        return kernel.compare(await kernel.ipt_kernel(tool, tables), await kernel.ipt_meant(tool, text, tables))

    @staticmethod
    async def compare_ipsets(prefix: str, sets: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return kernel.compare(await kernel.ipset_kernel(prefix), await kernel.ipset_meant(sets, prefix))

    def _token(self, key: tuple[str, str], token: str | None) -> None:
        if token is None:
            self.tokens.pop(key, None)
        else:
            self.tokens[key] = token


async def _run(tool: str, args: list[str], stdin: str) -> str:
    proc = await asyncio.create_subprocess_exec(tool, *args, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(stdin.encode())
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} {' '.join(args)}: {err.decode().strip()[-2000:]}")
    return out.decode()
