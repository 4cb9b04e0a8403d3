"""`apply` and `delete` served by the lab's controller, over a unix socket in the lab's run folder.

The controller already holds the lab's code, imported, and its last plan, in memory: a command that asks it
skips the command line's start-up (a few tenths of a second of imports) and the reading of the last plan, as
kubectl leaves the work to a running API server. The command line asks only a controller that runs the code it
would run itself (the package's digest); otherwise it does the work in its own process, as before.

One JSON line asks ({"op", "file", "shown", "version"}); lines come back: {"progress": step}, {"say": text},
then {"done": {...}} or {"error": {...}}, or {"fallback": why} when the command line should do it itself."""

from __future__ import annotations

import json
import os
import socketserver
import threading
from pathlib import Path
from typing import Any

from testbed import errors, state

SOCKET = "api.sock"


class Shown(os.PathLike):
    """A file by its absolute path, named as the user typed it (relative to the command's own folder)."""

    def __init__(self, path: str, shown: str) -> None:
        self.path, self.shown = path, shown

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.shown


def encode(err: errors.TestbedError) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type(err).__name__, "message": str(err)}
    if isinstance(err, errors.InvalidInput):
        out["problems"] = [{"file": p.file, "field": p.field, "reason": p.reason, "line": p.line}
                           for p in err.problems]
    return out


def decode(data: dict[str, Any]) -> errors.TestbedError:
    if data.get("type") == "InvalidInput":
        return errors.InvalidInput([errors.Problem(**p) for p in data["problems"]])
    kind = getattr(errors, str(data.get("type")), errors.TestbedError)
    if not (isinstance(kind, type) and issubclass(kind, errors.TestbedError)):
        kind = errors.TestbedError
    return kind(data.get("message", ""))


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.wfile.write((json.dumps(message) + "\n").encode())
            self.wfile.flush()
        except OSError:  # the command line went (Ctrl-C): the work goes on, so the lab is never left halfway
            pass

    def handle(self) -> None:
        from testbed import lab

        try:
            req = json.loads(self.rfile.readline())
        except ValueError:
            return
        if req.get("version") != self.server.version or req.get("op") not in ("apply", "delete"):
            self.send({"fallback": "the controller runs other code"})
            return
        name, path = self.server.lab, Shown(req["file"], req["shown"])

        def progress(step: str) -> None:
            self.send({"progress": step})

        def say(text: str) -> None:
            self.send({"say": text})

        try:
            if req["op"] == "apply":
                lab.apply(name, path, say, progress)
                self.send({"done": {}})
            else:
                self.send({"done": {"missing": lab.delete(name, path, say, progress)}})
        except errors.TestbedError as err:
            self.send({"error": encode(err)})
        except Exception as err:  # what the command line would have shown as a failure of its own
            self.send({"error": {"type": "TestbedError", "message": f"{type(err).__name__}: {err}"}})


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    lab = ""
    version = ""


def serve(name: str, version: str) -> _Server:
    """Listens in a thread of its own until the process ends."""
    path = state.run_dir(name) / SOCKET
    Path(path).unlink(missing_ok=True)
    server = _Server(str(path), _Handler)
    os.chmod(path, 0o600)
    server.lab, server.version = name, version
    threading.Thread(target=server.serve_forever, daemon=True, name="api").start()
    return server
