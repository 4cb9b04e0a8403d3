"""`apply` and `delete` handed to the lab's controller when it runs this very code (control/api.py): the work
and its progress are the same, without this process importing and planning. None when there is no such
controller: the caller does the work itself."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from testbed import errors, state
from testbed.control.api import SOCKET, decode


def ask(name: str, op: str, filename: str, steps: Any) -> dict[str, Any] | None:
    path = state.run_dir(name) / SOCKET
    if os.environ.get("TESTBED_LOCAL") or not path.exists():
        return None
    from testbed.runtime.readiness import code_version

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:  # a controller that is gone, or starting
        sock.close()
        return None
    with sock, sock.makefile("rwb") as stream:
        request = {"op": op, "file": os.path.abspath(filename), "shown": filename, "version": code_version()}
        stream.write((json.dumps(request) + "\n").encode())
        stream.flush()
        for line in stream:
            message = json.loads(line)
            if "fallback" in message:
                return None
            if "progress" in message:
                steps(message["progress"])
            elif "say" in message:
                steps.say(message["say"])
            elif "done" in message:
                return dict(message["done"])
            elif "error" in message:
                raise decode(message["error"])
    raise errors.TestbedError(f"the controller of lab {name} stopped before `{op}` finished; `testbed status` "
                              "shows where the lab is, and running the command again finishes it")
