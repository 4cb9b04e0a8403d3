"""A lab's desired state on disk: the topology, the applied manifests and the allocations made so far.

Kept under $TESTBED_STATE_DIR (default /var/lib/testbed), one folder per lab, written atomically, and guarded by
a lock so two commands never reconcile one lab at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def root() -> Path:
    return Path(os.environ.get("TESTBED_STATE_DIR", "/var/lib/testbed"))


def run_root() -> Path:
    """Runtime files (agent sockets) live on tmpfs, bind-mounted into the node containers."""
    return Path(os.environ.get("TESTBED_RUN_DIR", "/run/testbed"))


@dataclass
class LabState:
    name: str
    topology_file: str
    topology: dict[str, Any]  # the validated topology, manifests removed
    manifests: list[dict[str, Any]] = field(default_factory=list)  # raw documents, in apply order
    allocations: dict[str, dict[str, str]] = field(default_factory=dict)
    underlay: str = ""
    phase: str = "creating"  # creating | ready

    def save(self) -> None:
        d = root() / self.name
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / "state.json.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=1, sort_keys=True))
        tmp.replace(d / "state.json")


def load(name: str) -> LabState | None:
    try:
        return LabState(**json.loads((root() / name / "state.json").read_text()))
    except FileNotFoundError:
        return None


def names() -> list[str]:
    if not root().is_dir():
        return []
    return sorted(p.parent.name for p in root().glob("*/state.json"))


def remove(name: str) -> None:
    d = root() / name
    for p in (d / "state.json", d / "state.json.tmp"):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    with contextlib.suppress(OSError):
        d.rmdir()


@contextlib.contextmanager
def locked(name: str) -> Iterator[None]:
    """An exclusive lock per lab; its file sits beside the lab folders so `down` can remove the folder."""
    root().mkdir(parents=True, exist_ok=True)
    path = root() / f".{name}.lock"
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if load(name) is None:  # a lab that does not exist (bad input, or after down) keeps no lock file
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            fcntl.flock(f, fcntl.LOCK_UN)
