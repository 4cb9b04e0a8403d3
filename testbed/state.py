"""A lab's desired state on disk: the topology, the applied manifests and the allocations made so far.

Kept under $TESTBED_STATE_DIR (default /var/lib/testbed), one folder per lab, written atomically, and guarded by
a lock so two commands never reconcile one lab at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from testbed.errors import InvalidInput, Problem, TestbedError
from testbed.model.labels import lab_name

ALLOCATIONS = ".allocations"  # the machine-wide lock under which labs pick their underlay


def check_name(name: str, source: str = "lab name") -> str:
    """Every lab name that reaches a path must be the DNS label a topology's `name` is: never '..', '/x'
    or empty, so joining it to testbed's folders can never leave them."""
    try:
        return lab_name(name)
    except ValueError as err:
        raise InvalidInput([Problem(source, "", f"invalid lab name: {err}")]) from None


def valid(name: str) -> bool:
    try:
        lab_name(name)
        return True
    except ValueError:
        return False


def inside(base: Path, name: str) -> Path:
    """base/name, for a checked name, resolved and refused unless it is a direct child of base."""
    path = (base / check_name(name)).resolve()
    if path.parent != base.resolve():
        raise TestbedError(f"refusing to touch {path}: it is not inside {base}")
    return path


def lab_dir(name: str) -> Path:
    return inside(root(), name)


def run_dir(name: str) -> Path:
    return inside(run_root(), name)


def remove_run_dir(name: str) -> bool:
    """Removes the lab's runtime folder (agent sockets); only ever a checked child of the run root."""
    path = run_dir(name)
    if not path.is_dir() or path.is_symlink():
        return False
    shutil.rmtree(path, ignore_errors=True)
    return True


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
    readiness: dict[str, bool] = field(default_factory=dict)  # probed pods' readiness the last sync used
    # the control plane's view of nodes: name → {"ready": bool, "since": epoch seconds, "evicted": bool}
    conditions: dict[str, dict[str, Any]] = field(default_factory=dict)
    generations: dict[str, int] = field(default_factory=dict)  # a Deployment replica → times it was evicted
    faults: list[dict[str, Any]] = field(default_factory=list)  # what `testbed fault` did and has not undone

    def held_down(self) -> set[str]:
        """Nodes a recorded fault stopped or froze: not ready until it is cleared, whatever the control plane has
        seen yet (its first heal after `up` would otherwise start a node stopped a moment before)."""
        return {node for f in self.faults if (node := holds_down(f))}

    def faults_up(self) -> list[dict[str, Any]]:
        """The faults an `up` leaves recorded: it starts every node, so those that held one down are over."""
        return [f for f in self.faults if not holds_down(f)]

    def save(self) -> None:
        """Readable by root only, in a folder only root enters: the manifests may hold Secrets."""
        d = lab_dir(self.name)
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o700)
        # its fields are plain JSON already: asdict's deep copy would cost more than the writing; no indent, so
        # that json's C encoder writes it (an indented dump is written in Python, 0.2 s at 10,000 pods)
        write_private(d / "state.json", json.dumps({f.name: getattr(self, f.name) for f in fields(self)},
                                                   separators=(",", ":"), sort_keys=True))


def holds_down(fault: dict[str, Any]) -> str | None:
    """The node a recorded fault stopped or froze (faults/machines.py marks it), if any."""
    return fault["args"]["node"] if fault.get("notes", {}).get("down") else None


def write_private(path: Path, content: str | bytes) -> None:
    """path replaced at once by content, mode 0600."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb" if isinstance(content, bytes) else "w") as f:
        f.write(content)
    tmp.replace(path)


def load(name: str) -> LabState | None:
    try:
        data = json.loads((lab_dir(name) / "state.json").read_text())
    except FileNotFoundError:
        return None
    # a state written by another testbed version may carry fields this one does not know: `down` must still work
    known = {f.name for f in fields(LabState)}
    st = LabState(**{k: v for k, v in data.items() if k in known})
    if st.name != name:
        raise TestbedError(f"{lab_dir(name) / 'state.json'} names lab {st.name!r}, not {name!r}")
    return st


class Watched:
    """A lab's state, read again only when its file changed (every save replaces it): for a process that looks
    at it several times a second, as the controller does (the state of 10,000 pods takes tens of ms to parse).
    What get() returns is shared: read it, never change it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._seen: tuple[int, int, int] | None = None
        self._state: LabState | None = None

    def get(self) -> LabState | None:
        try:
            s = (lab_dir(self.name) / "state.json").stat()
        except FileNotFoundError:
            self._seen = self._state = None
            return None
        seen = (s.st_ino, s.st_mtime_ns, s.st_size)
        if seen != self._seen:
            self._state, self._seen = load(self.name), seen
        return self._state


def names() -> list[str]:
    """The labs with a state file; a folder whose name is not a lab name is not testbed's and is ignored."""
    if not root().is_dir():
        return []
    return sorted(n for p in root().glob("*/state.json") if valid(n := p.parent.name))


# the lab's CA too, and the last sync's plan (lastplan.py)
PRIVATE_FILES = ("state.json", "state.json.tmp", "ca.crt", "ca.key", "ca.crt.tmp", "ca.key.tmp", "plan.pickle",
                 "plan.pickle.tmp")


def remove(name: str) -> None:
    d = lab_dir(name)
    for p in (d / f for f in PRIVATE_FILES):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    with contextlib.suppress(OSError):
        d.rmdir()


@contextlib.contextmanager
def _flock(path: Path, keep: Callable[[], bool]) -> Iterator[None]:
    root().mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if not keep():
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            fcntl.flock(f, fcntl.LOCK_UN)


def locked(name: str) -> contextlib.AbstractContextManager[None]:
    """An exclusive lock per lab; its file sits beside the lab folders so `down` can remove the folder. A lab
    that does not exist (bad input, or after down) keeps no lock file."""
    return _flock(root() / f".{check_name(name)}.lock", lambda: load(name) is not None)


def allocation_lock() -> contextlib.AbstractContextManager[None]:
    return _flock(root() / f"{ALLOCATIONS}.lock", lambda: bool(names()))
