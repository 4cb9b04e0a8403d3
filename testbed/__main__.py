"""`testbed` and `python -m testbed`: the command line, with a Ctrl-C during start-up (importing click, rich and
the Docker SDK takes a few tenths of a second) answered like one later on, not with a traceback."""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def main() -> None:
    # pydantic looks for plugins in every installed distribution's entry points as the first model is built
    # (a tenth of a second); testbed's models use none
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from testbed.agent.light import bare_pyroute2

    bare_pyroute2()  # the command line uses pyroute2's rtnetlink socket alone, as the agent does
    try:
        from testbed.cli import main as cli
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: nothing was changed\n")
        sys.exit(130)
    try:
        cli()
    except SystemExit as done:
        leave(done.code)
    leave(0)


def leave(code: object) -> NoReturn:
    """The process ends without the interpreter's teardown, which spends a tenth of a second or more (after
    `up`, `status`) freeing objects one by one: exit handlers run and output is flushed first. Not while another
    thread runs: it may still be writing."""
    if threading.active_count() > 1:
        sys.exit(code)
    if code is not None and not isinstance(code, int):
        sys.stderr.write(f"{code}\n")
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that went away (`| head`) or a closed stream
            code = code or 1
    os._exit(code or 0)


if __name__ == "__main__":
    main()
