"""nft scripts run inside the agent through libnftables, the library the nft command is a front end to. A
process per sync was most of what a small change cost (measured in a node: 10 ms for `nft -f` of a one-line
script, 4 ms through the library). Calls run in a worker thread, back in the node's netns first (netns is per
thread, and the agent's main thread visits pods); the nft command is the fallback without the library."""

from __future__ import annotations

import asyncio
import ctypes
import os
import threading

from testbed.agent import nsutil


class Nft:
    def __init__(self) -> None:
        self.netns = nsutil.self_fd()  # made on the main thread at start, in the node's own netns
        self.lock = threading.Lock()
        try:
            lib = ctypes.CDLL("libnftables.so.1")
        except OSError:
            self.lib = None
            return
        lib.nft_ctx_new.restype, lib.nft_ctx_new.argtypes = ctypes.c_void_p, [ctypes.c_uint32]
        for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, name).argtypes, getattr(lib, name).restype = [ctypes.c_void_p], ctypes.c_char_p
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        self.lib = lib

    def _run(self, script: str) -> str:
        # a context per script: one kept across scripts keeps the cache of the last, and a table of 100,000
        # elements made the next one-element change take 0.2 s instead of 10 ms
        with self.lock:
            nsutil.setns(self.netns)
            lib = self.lib
            assert lib is not None
            ctx = lib.nft_ctx_new(0)
            try:
                lib.nft_ctx_buffer_output(ctx)
                lib.nft_ctx_buffer_error(ctx)
                rc = lib.nft_run_cmd_from_buffer(ctx, script.encode())
                out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode()
                err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode()
            finally:
                lib.nft_ctx_free(ctx)
        if rc != 0:
            raise RuntimeError(f"nft -f: {err.strip()[-2000:]}")
        return out

    async def run(self, script: str) -> str:
        if self.lib is None:
            proc = await asyncio.create_subprocess_exec("nft", "-f", "-", stdin=asyncio.subprocess.PIPE,
                                                        stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.PIPE)
            out, err = await proc.communicate(script.encode())
            if proc.returncode != 0:
                raise RuntimeError(f"nft -f: {err.decode().strip()[-2000:]}")
            return out.decode()
        return await asyncio.to_thread(self._run, script)

    def close(self) -> None:
        os.close(self.netns)
