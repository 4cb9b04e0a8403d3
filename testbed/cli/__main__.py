"""`python -m testbed.cli`: the same start as the `testbed` command (testbed/__main__.py), which skips what the
command line never uses (pydantic's plugin search, pyroute2's full package)."""

from testbed.__main__ import main

main()
