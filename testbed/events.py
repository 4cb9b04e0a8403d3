"""What testbed did to a lab, as `kubectl get events` shows a cluster's: each step of an up, apply or delete with
its time and what it changed, each installer's sync on each node (elements added and removed, a whole reload
and why), readiness changes and the controller's syncs, and errors. One JSON object a line, in the lab's run
folder (`events.jsonl`, rotated at 512 KiB, three old files kept), written through Python's logging, so every
process that acts on the lab (the command line, the controller) appends to the same log."""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from testbed import state

FILE = "events.jsonl"
MAX_BYTES = 512 * 1024
BACKUPS = 3
_lock = threading.Lock()


class _Json(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(record.msg, default=str)


def _logger(lab: str) -> logging.Logger | None:
    """The lab's event logger, made once per process; None while the lab has no run folder (nothing made)."""
    name = f"testbed.events.{lab}"
    log = logging.getLogger(name)
    with _lock:
        if not log.handlers:
            folder = state.run_dir(lab)
            if not folder.is_dir():
                return None
            handler = logging.handlers.RotatingFileHandler(folder / FILE, maxBytes=MAX_BYTES, backupCount=BACKUPS)
            handler.setFormatter(_Json())
            log.addHandler(handler)
            log.setLevel(logging.INFO)
            log.propagate = False
    return log


def emit(lab: str, reason: str, obj: str, message: str, kind: str = "Normal", **fields: Any) -> None:
    """One event: reason (CamelCase, as Kubernetes names them), the object it is about (`lab/x`, `node/node2`,
    `installer/kube-proxy`, `pod/ns/name`), a sentence, and any fields (duration in seconds, changes)."""
    log = _logger(lab)
    if log is None:
        return
    event = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "lab": lab, "type": kind,
             "reason": reason, "object": obj, "message": message, "pid": os.getpid(), **fields}
    with contextlib.suppress(OSError):  # an event must never break what it reports on
        log.info(event)


def forget(lab: str) -> None:
    """Close the lab's log (its folder is about to go)."""
    log = logging.getLogger(f"testbed.events.{lab}")
    with _lock:
        for h in list(log.handlers):
            h.close()
            log.removeHandler(h)


def _files(lab: str) -> list[Path]:
    folder = state.run_dir(lab)
    return [p for p in [*(folder / f"{FILE}.{i}" for i in range(BACKUPS, 0, -1)), folder / FILE] if p.exists()]


def _parse(line: str) -> dict[str, Any] | None:
    try:
        return json.loads(line)
    except ValueError:
        return None


def read(lab: str) -> list[dict[str, Any]]:
    """Every event kept, oldest first."""
    out = []
    for path in _files(lab):
        with open(path, errors="replace") as f:
            out += [e for line in f if (e := _parse(line))]
    return out


def follow(lab: str, poll: float = 0.2) -> Iterator[dict[str, Any]]:
    """Events as they are written from now on (across rotation), until the lab's folder goes."""
    path = state.run_dir(lab) / FILE
    handle, inode, first = None, None, True
    while state.run_dir(lab).is_dir():
        if path.exists() and path.stat().st_ino != inode:  # the first file, or a new one after rotation
            if handle:
                handle.close()
            handle, inode = open(path, errors="replace"), path.stat().st_ino  # noqa: SIM115
            if first:
                handle.seek(0, os.SEEK_END)
            first = False
        line = handle.readline() if handle else ""
        if line:
            if event := _parse(line):
                yield event
        else:
            time.sleep(poll)
    if handle:
        handle.close()
