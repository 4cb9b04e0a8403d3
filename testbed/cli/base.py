"""What every `testbed` verb shares: the command group, progress lines, the `--lab` option and how errors
become exit codes. The verbs are in cli.py (labs), cli_probe.py (probe, policy) and cli_host.py (images,
doctor, version).

Exit codes: 0 ok, 1 failed while acting, 2 bad input (nothing created), 3 not found, 4 environment problem.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console

from testbed import errors, state
from testbed.errors import Interrupted, TestbedError

out = Console()
err = Console(stderr=True, soft_wrap=True)  # messages are never cut into lines, whatever the width


def _fail(e: TestbedError) -> None:
    if isinstance(e, errors.InvalidInput):
        err.print(f"[red]error:[/] invalid input, nothing was created ({len(e.problems)} problem(s)):",
                  highlight=False)
        for p in e.problems:
            err.print(f"  {p}", highlight=False, markup=False)
    else:
        err.print(f"[red]error:[/] {e}", highlight=False)
    sys.exit(e.exit_code)


class Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        from docker.errors import DockerException

        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # what was recorded by then says what is left; Interrupted (below) says it when a lab is half made
            err.print("interrupted", highlight=False)
            sys.exit(Interrupted.exit_code)
        except TestbedError as e:
            _fail(e)
        except DockerException as e:
            err.print(f"[red]error:[/] Docker engine: {e}", highlight=False)
            sys.exit(errors.EXIT_FAILED)


class Steps:
    """kind-style progress: one line per step with a spinner while it runs and its time when done."""

    def __init__(self) -> None:
        self.status: Any = None
        self.title = ""
        self.start = 0.0

    def __call__(self, title: str) -> None:
        self.done()
        self.title, self.start = title, time.monotonic()
        self.status = err.status(f" {title} ...")
        self.status.start()

    def done(self) -> None:
        if self.status:
            self.status.stop()
            err.print(f" [green]✓[/] {self.title} ({time.monotonic() - self.start:.1f}s)", highlight=False)
            self.status = None

    def say(self, text: str) -> None:
        err.print(f"   {text}", highlight=False, markup=False)


def _run(fn: Callable[[Steps], Any]) -> Any:
    steps = Steps()
    try:
        result = fn(steps)
    except BaseException:
        if steps.status:
            steps.status.stop()
            err.print(f" [red]✗[/] {steps.title}", highlight=False)
        raise
    steps.done()
    return result


def _lab(name: str | None) -> str:
    """The lab to act on: given, or $TESTBED_LAB, or the only one there is. A name is checked before it goes
    near a path."""
    if name is not None:
        source = "$TESTBED_LAB" if name == os.environ.get("TESTBED_LAB") else "lab name"
        return state.check_name(name, source)
    names = state.names()
    if len(names) == 1:
        return names[0]
    if not names:
        raise errors.NotFound("no lab is up (run `testbed up`)")
    raise click.UsageError(f"several labs are up ({', '.join(names)}): pass --lab")


lab_option = click.option("--lab", "lab_name", envvar="TESTBED_LAB", help="Lab name (default: the only lab).")


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="testbed")
def main() -> None:
    """Emulate a Kubernetes cluster's network on this machine, with real packets."""
