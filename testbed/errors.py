"""Errors that reach the user, each with its exit code."""

from __future__ import annotations

from dataclasses import dataclass

EXIT_FAILED = 1  # something went wrong while acting on the machine
EXIT_INVALID = 2  # bad input: nothing was created
EXIT_NOT_FOUND = 3  # no such lab, pod or file
EXIT_ENVIRONMENT = 4  # the machine cannot run labs (no Docker engine, no root, a kernel feature missing)


class TestbedError(Exception):
    exit_code = EXIT_FAILED


class Interrupted(TestbedError):
    exit_code = 130  # as a shell reports SIGINT


class NotFound(TestbedError):
    exit_code = EXIT_NOT_FOUND


class EnvironmentProblem(TestbedError):
    exit_code = EXIT_ENVIRONMENT


class Refused(TestbedError):
    """A well-formed request the lab cannot carry out as asked (a move the network mode or the pod's placement
    forbids): nothing was changed."""

    exit_code = EXIT_INVALID


MAX_ECHO = 80  # characters of a user's value quoted back in a message
MAX_REASON = 1000


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def show(value: object, limit: int = MAX_ECHO) -> str:
    """repr() of a value from the input, cut to a readable length: a 50 MB label is named, never echoed."""
    return cut(repr(value), limit)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where (file, line, field path) and why. Long parts are cut, so an
    error never echoes a huge value back."""

    file: str
    field: str
    reason: str
    line: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "file", cut(self.file, 300))
        object.__setattr__(self, "field", cut(self.field, 300))
        object.__setattr__(self, "reason", cut(self.reason, MAX_REASON))

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.reason}" if self.field else f"{where}: {self.reason}"


class InvalidInput(TestbedError):
    exit_code = EXIT_INVALID

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
