"""What every `testbed` verb shares: the command group, the consoles, progress lines, which lab a verb acts on
and how errors become exit codes.

Exit codes: 0 ok, 1 failed while acting, 2 bad input or a refused request (nothing changed), 3 not found,
4 environment problem.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.text import Text

from testbed import errors, state
from testbed.errors import Interrupted, TestbedError

WIDE = 100_000  # columns when the output is not a terminal: values are printed whole, as kubectl does


def console(stderr: bool = False) -> Console:
    """Values are printed as they are: no emoji codes (`:100:` in an IPv6 address), no markup read in them
    (colour is given as styles), and never cut when the output is a pipe or a CI log."""
    c = Console(stderr=stderr, emoji=False, markup=False, highlight=False, soft_wrap=stderr)
    if not c.is_terminal:
        c = Console(stderr=stderr, emoji=False, markup=False, highlight=False, soft_wrap=stderr, width=WIDE)
    return c


out = console()
err = console(stderr=True)


def styled(*parts: str | tuple[str, str]) -> Text:
    """A line from plain strings and (text, style) pairs."""
    line = Text()
    for part in parts:
        line.append(*part) if isinstance(part, tuple) else line.append(part)
    return line


def _fail(e: TestbedError) -> None:
    if isinstance(e, errors.InvalidInput):
        err.print(styled(("error:", "red"), f" invalid input, nothing was created ({len(e.problems)} problem(s)):"))
        for p in e.problems:
            err.print(f"  {p}")
    else:
        err.print(styled(("error:", "red"), f" {e}"))
    sys.exit(e.exit_code)


class Group(click.Group):
    """Verbs are imported when they are asked for (`apply` needs none of `ui`'s or `trace`'s modules); the help
    text lists them all. verbs: name → the module of testbed.cli that registers it on import."""

    verbs: dict[str, str] = {}

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.verbs:
            importlib.import_module(f"testbed.cli.{self.verbs[cmd_name]}")
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self.verbs))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # what was recorded by then says what is left; Interrupted (below) says it when a lab is half made
            err.print("interrupted")
            sys.exit(Interrupted.exit_code)
        except TestbedError as e:
            _fail(e)
        except Exception as e:
            from testbed.runtime.machines import engine_errors

            if not isinstance(e, engine_errors()):
                raise
            err.print(styled(("error:", "red"), f" Docker engine: {e}"))
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
            err.print(styled((" ✓", "green"), f" {self.title} ({time.monotonic() - self.start:.1f}s)"))
            self.status = None

    def say(self, text: str) -> None:
        err.print(f"   {text}")


def _run(fn: Callable[[Steps], Any]) -> Any:
    steps = Steps()
    try:
        result = fn(steps)
    except BaseException:
        if steps.status:
            steps.status.stop()
            err.print(styled((" ✗", "red"), f" {steps.title}"))
        raise
    steps.done()
    return result


def _current_file() -> Path:
    base = os.environ.get("TESTBED_CONFIG_DIR") or os.path.join(
        os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"), "testbed")
    return Path(base) / "current-lab"


def current() -> str | None:
    """The current lab (`testbed use`), kept per user as kubectl keeps a current context."""
    try:
        name = _current_file().read_text().strip()
    except OSError:
        return None
    return name if state.valid(name) else None


def use(name: str | None) -> None:
    path = _current_file()
    if name is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(name + "\n")


def _lab(name: str | None, ask: str = "pass --lab NAME") -> str:
    """The lab to act on: named (--lab, or $TESTBED_LAB), else the current lab, else the only one up; one not
    named is said on stderr. A name is checked before it goes near a path."""
    if name is not None:
        source = "$TESTBED_LAB" if name == os.environ.get("TESTBED_LAB") else "lab name"
        return state.check_name(name, source)
    names = state.names()
    chosen = current()
    if chosen in names:
        err.print(styled((f"lab {chosen}", "bold"), " (the current lab: `testbed use` changes it)"), style="dim")
        return chosen  # type: ignore[return-value]
    if len(names) == 1:
        err.print(styled((f"lab {names[0]}", "bold"), " (the only lab up)"), style="dim")
        return names[0]
    if not names:
        raise errors.NotFound("no lab is up (run `testbed up`)")
    raise click.UsageError(f"several labs are up ({', '.join(names)}): {ask}, set TESTBED_LAB, or choose the "
                           "current lab with `testbed use NAME`")


lab_option = click.option("--lab", "lab_name", envvar="TESTBED_LAB",
                          help="Lab name (default: $TESTBED_LAB, the current lab, or the only lab up).")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="testbed")
def main() -> None:
    """Emulate a Kubernetes cluster's network on this machine, with real packets.

    \b
    Start here:
      testbed up topologies/default.yaml      # a 3-node lab
      testbed status                          # what it holds
      testbed exec default/client -- curl -s http://10.244.2.2:8080/clientip
    """
