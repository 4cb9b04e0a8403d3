"""`testbed` and `python -m testbed`: the command line, with a Ctrl-C during start-up (importing click, rich and
the Docker SDK takes a few tenths of a second) answered like one later on, not with a traceback."""

from __future__ import annotations

import os
import sys


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
    cli()


if __name__ == "__main__":
    main()
