"""Errors that reach the user, each with its exit code."""

from __future__ import annotations

from dataclasses import dataclass

EXIT_FAILED = 1  # something went wrong while acting on the machine
EXIT_INVALID = 2  # bad input: nothing was created
EXIT_NOT_FOUND = 3  # no such lab, pod or file
EXIT_ENVIRONMENT = 4  # the machine cannot run labs (no Docker engine, no root, a kernel feature missing)


class TestbedError(Exception):
    exit_code = EXIT_FAILED


class NotFound(TestbedError):
    exit_code = EXIT_NOT_FOUND


class EnvironmentProblem(TestbedError):
    exit_code = EXIT_ENVIRONMENT


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where (file, line, field path) and why."""

    file: str
    field: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.reason}" if self.field else f"{where}: {self.reason}"


class InvalidInput(TestbedError):
    exit_code = EXIT_INVALID

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
