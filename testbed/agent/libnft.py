"""nft scripts run inside the agent through libnftables, the library the nft command is a front end to. A
process per sync was most of what a small change cost (measured in a node: 10 ms for `nft -f` of a one-line
script, 4 ms through the library). Calls run in a worker thread, back in the node's netns first (netns is per
thread, and the agent's main thread visits pods). `load` gives None without the library: then the caller runs
the nft command."""

from __future__ import annotations

import asyncio
import ctypes
import threading

from testbed.agent import nsutil

LIBRARY = "libnftables.so.1"


class Nft:
    @classmethod
    def load(cls) -> Nft | None:
        try:
            return cls(ctypes.CDLL(LIBRARY))
        except OSError:
            return None

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.netns = nsutil.self_fd()  # made on the main thread at start, in the node's own netns
        self.lock = threading.Lock()
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
        return await asyncio.to_thread(self._run, script)
