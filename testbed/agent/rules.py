"""Packet-filter rules owned by testbed, applied atomically: each owner (egress NAT, later kube-proxy and policy)
renders its whole table as `nft -f` text on the host (pure, unit-tested), and the agent replaces that table in
one transaction. A digest skips the work when nothing changed."""

from __future__ import annotations

import asyncio
import hashlib


class Rules:
    def __init__(self) -> None:
        self.digests: dict[tuple[str, str], str] = {}

    async def apply(self, family: str, table: str, text: str | None) -> dict[str, bool]:
        """Replaces table `family table` with text (a `table` block), or deletes it when text is None."""
        key = (family, table)
        digest = hashlib.sha256((text or "").encode()).hexdigest()
        if self.digests.get(key) == digest and (text is None or await self._exists(family, table)):
            return {"changed": False}
        # creating the table first makes the delete valid whether or not it existed: one transaction either way
        script = f"table {family} {table}\ndelete table {family} {table}\n" + (text or "")
        await _nft(["-f", "-"], script)
        self.digests[key] = digest
        return {"changed": True}

    @staticmethod
    async def _exists(family: str, table: str) -> bool:
        try:
            await _nft(["list", "table", family, table], "")
            return True
        except RuntimeError:
            return False


async def _nft(args: list[str], stdin: str) -> str:
    proc = await asyncio.create_subprocess_exec("nft", *args, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(stdin.encode())
    if proc.returncode != 0:
        raise RuntimeError(f"nft {' '.join(args)}: {err.decode().strip()[-2000:]}")
    return out.decode()
