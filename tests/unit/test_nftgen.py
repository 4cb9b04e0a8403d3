"""The ruleset generation an agent records after its own changes (agent/nftgen.py): the netlink request and
the kernel's answer, and the real counter of a scratch network namespace moving with each commit."""

import shutil
import struct
import subprocess
import sys

import pytest

from testbed.agent import nftgen


def test_the_request_asks_nftables_for_its_generation():
    length, kind, flags, _, _ = nftgen.HEADER.unpack_from(nftgen.request())
    assert (length, kind, flags) == (20, (10 << 8) | 16, 1)


def test_the_answer_carries_the_generation_big_endian():
    attrs = struct.pack("=HH", 8, nftgen.NFTA_GEN_ID) + struct.pack(">I", 258) + \
        struct.pack("=HH", 8, 2) + struct.pack(">I", 7)
    body = nftgen.NFGENMSG.pack(0, 0, 0) + attrs
    data = nftgen.HEADER.pack(16 + len(body), (10 << 8) | nftgen.NFT_MSG_NEWGEN, 0, 1, 0) + body
    assert nftgen.parse(data) == 258
    error = nftgen.HEADER.pack(36, 2, 0, 1, 0) + bytes(20)  # NLMSG_ERROR
    assert nftgen.parse(error) is None
    assert nftgen.parse(b"") is None


SCRIPT = """
import subprocess
from testbed.agent import nftgen
before = nftgen.generation()
subprocess.run(["nft", "add", "table", "inet", "t"], check=True)
after = nftgen.generation()
subprocess.run(["nft", "list", "table", "inet", "t"], check=True, capture_output=True)
print(before, after, nftgen.generation())
"""


@pytest.mark.skipif(shutil.which("nft") is None or shutil.which("unshare") is None, reason="needs nft and unshare")
def test_a_commit_moves_the_generation_and_a_listing_does_not():
    done = subprocess.run(["unshare", "-n", sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0 and "Operation not permitted" in done.stderr:
        pytest.skip("no new network namespace here: " + done.stderr.strip()[-200:])
    before, after, listed = (int(x) for x in done.stdout.split())
    assert after == before + 1 and listed == after


def test_a_table_is_read_back_unless_only_the_agents_own_changes_ran(monkeypatch):
    """What `up`'s verify trusts: a table the agent wrote, while the generation moved only by its own writes;
    anyone else's transaction (even before the agent's next write of another table) makes it read them all."""
    import asyncio

    from testbed.agent import rules

    now = {"gen": 10}
    monkeypatch.setattr(nftgen, "generation", lambda: now["gen"])
    asked: list[tuple[str, str]] = []

    async def written() -> str:
        now["gen"] += 1
        return ""

    async def scenario() -> list[bool]:
        r = rules.Rules()

        def holds(key: tuple[str, str], match: bool):  # type: ignore[no-untyped-def]
            async def compare() -> dict[str, bool]:
                asked.append(key)
                return {"match": match}
            return r._holds(key, compare)

        a, b = ("inet", "a"), ("inet", "b")
        await r._write(a, written())
        await r._write(b, written())
        out = [await holds(a, False), await holds(b, False)]  # only its own writes: trusted, not read
        now["gen"] += 1  # someone else's transaction
        await r._write(b, written())  # the agent's next write does not vouch for a
        out += [await holds(a, True), await holds(a, False), await holds(b, False)]
        await r._write(None, written())  # a script outside the tables (a trace's rules) is anyone's change
        out.append(await holds(b, True))
        return out

    assert asyncio.run(scenario()) == [True, True, True, True, True, True]
    assert asked == [("inet", "a"), ("inet", "b")]
