"""Entry point of the node agent: `python3 -m testbed.agent` as the node container's main process.

A JSON-lines control socket in the run directory the host bind-mounts; one request per line, one reply per line.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import traceback
from typing import Any

from testbed.agent.pods import PodManager
from testbed.agent.version import code_version

RUN_DIR = os.environ.get("TESTBED_RUN_DIR", "/run/testbed")


class Agent:
    def __init__(self, node: str) -> None:
        self.node = node
        self.pods = PodManager(node, os.path.join(RUN_DIR, "pods.json"))
        self.lock = asyncio.Lock()
        self.version = code_version()
        self.reexec = False

    async def handle(self, req: dict[str, Any]) -> Any:
        op = req.get("op")
        if op == "ping":
            return {"node": self.node, "pid": os.getpid(), "version": self.version}
        # re-executed after the reply: pods and their netns stay, and the next sync reopens their sockets
        if op == "reexec":
            async with self.lock:
                self.reexec = True
                return {"version": self.version}
        if op == "sync_pods":
            async with self.lock:
                return await self.pods.sync(req["net"], req["pods"])
        if op == "status":
            return {"node": self.node, "pods": self.pods.status(), "links": self.pods.links(), "rss_kib": _rss_kib(),
                    "version": self.version}
        raise ValueError(f"unknown op {op!r}")

    async def client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    reply = {"ok": True, "result": await self.handle(json.loads(line))}
                except Exception as err:
                    reply = {"ok": False, "error": f"{type(err).__name__}: {err}",
                             "trace": traceback.format_exc()}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
                if self.reexec:
                    os.execv(sys.executable, [sys.executable, "-m", "testbed.agent"])
        finally:
            writer.close()


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def main() -> None:
    agent = Agent(os.environ.get("TESTBED_NODE", os.uname().nodename))
    path = os.path.join(RUN_DIR, "agent.sock")
    tmp = path + ".new"
    if os.path.exists(tmp):
        os.unlink(tmp)
    server = await asyncio.start_unix_server(agent.client, path=tmp, limit=64 * 1024 * 1024)
    os.replace(tmp, path)  # the socket appears only once it accepts, so the host's wait is exact
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
