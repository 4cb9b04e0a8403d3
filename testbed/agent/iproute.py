"""pyroute2's IPRoute, with every dump retried when the kernel says it was interrupted.

A dump that races with changes to the table it reads (pods created or destroyed by the agent, netns being torn
down by the kernel after a crash) comes back flagged NLM_F_DUMP_INTR; the kernel's answer to that is "ask
again". pyroute2 raises NetlinkDumpInterrupted after handing out a possibly inconsistent list, so the dump is
collected whole and re-asked here, for every caller (link_lookup, get_links, get_addr, routes, neighbours, fdb).
"""

from __future__ import annotations

from typing import Any

from pyroute2.iproute.linux import IPRoute as _IPRoute
from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkDumpInterrupted

ATTEMPTS = 50  # each attempt is a fresh dump; interruptions come from bursts of changes, which end


class IPRoute(_IPRoute):
    def nlm_request(self, msg: Any, msg_type: int, msg_flags: int = NLM_F_REQUEST | NLM_F_DUMP, *args: Any,
                    **kwargs: Any) -> Any:
        parent = super().nlm_request
        if msg_flags & NLM_F_DUMP != NLM_F_DUMP:
            return parent(msg, msg_type, msg_flags, *args, **kwargs)
        for _ in range(ATTEMPTS - 1):
            try:
                return list(parent(msg, msg_type, msg_flags, *args, **kwargs))
            except NetlinkDumpInterrupted:
                continue
        return list(parent(msg, msg_type, msg_flags, *args, **kwargs))
