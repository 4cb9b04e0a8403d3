"""The agent's code version: a digest of its own source files.

The agent runs the host's copy of this package (bind-mounted), so after an upgrade a running agent still holds
the old code in memory. Its `ping` reports the digest it started with; the host compares it with the files as
they are now and asks an outdated agent to re-execute itself.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

HERE = Path(__file__).parent


def code_version() -> str:
    digest = hashlib.sha256()
    for path in sorted(HERE.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


_started: str | None = None


def started_with() -> str:
    """The digest of the code this process runs, taken the first time it is asked: a process forked from a warm
    one (agent/zygote.py) runs the code its parent loaded, whatever the files say by then."""
    global _started
    if _started is None:
        _started = code_version()
    return _started
