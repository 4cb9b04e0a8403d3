"""A scenario file (`kind: Scenario`): steps run in order against a lab, each one of apply, fault, clear, wait,
probe and expect; expectations are a connection that succeeds or fails, or an outage a measured fault caused
no longer than a bound. Checked field by field before anything runs (file, line, field, reason)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from testbed.errors import InvalidInput
from testbed.model.reader import read_docs

DURATION = re.compile(r"^\d+(\.\d+)?(ms|s|m)?$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _duration(value: str | float) -> str:
    text = str(value)
    if not DURATION.match(text):
        raise ValueError(f"{text!r} is not a duration (500ms, 30s, 2m)")
    return text


class Connection(Strict):
    from_: str = Field(alias="from")
    target: str
    protocol: Literal["tcp", "udp", "sctp"] = "tcp"
    timeout: float = Field(2.0, gt=0, le=60)


class Measure(Strict):
    from_: str = Field(alias="from")
    target: str
    protocol: Literal["tcp", "udp", "dns"] = "tcp"
    period: str = "10ms"
    timeout: str = "60s"

    check_duration = field_validator("period", "timeout")(_duration)


class FaultStep(Strict):
    kind: str
    for_: str | None = Field(None, alias="for")
    measure: Measure | None = None
    args: dict[str, Any] = Field(default_factory=dict)

    check_duration = field_validator("for_")(lambda v: v if v is None else _duration(v))


class Outage(Strict):
    of: str = Field(description="The name of the fault step whose measure it is")
    atMost: str

    check_duration = field_validator("atMost")(_duration)


class Expect(Strict):
    reachable: Connection | None = None
    unreachable: Connection | None = None
    outage: Outage | None = None

    @model_validator(mode="after")
    def _one(self) -> Expect:
        if sum(x is not None for x in (self.reachable, self.unreachable, self.outage)) != 1:
            raise ValueError("exactly one of reachable, unreachable and outage")
        return self


class Step(Strict):
    name: str | None = None
    apply: str | None = None
    fault: FaultStep | None = None
    clear: str | None = None  # a fault step's name, or "all"
    wait: str | None = None
    probe: Connection | None = None
    expect: Expect | None = None

    check_duration = field_validator("wait")(lambda v: v if v is None else _duration(v))

    @model_validator(mode="after")
    def _one(self) -> Step:
        given = [k for k in ("apply", "fault", "clear", "wait", "probe", "expect") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a step is exactly one of apply, fault, clear, wait, probe and expect" +
                             (f" (this one has {', '.join(given)})" if given else ""))
        return self

    @property
    def action(self) -> str:
        return next(k for k in ("apply", "fault", "clear", "wait", "probe", "expect") if getattr(self, k) is not None)


class Scenario(Strict):
    apiVersion: Literal["testbed/v1alpha1"]
    kind: Literal["Scenario"]
    name: str = "scenario"
    lab: str | None = None
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        names = set()
        for step in self.steps:
            if step.expect and step.expect.outage and step.expect.outage.of not in names:
                raise ValueError(f"expect.outage.of: {step.expect.outage.of!r} names no earlier fault step")
            if step.name:
                names.add(step.name)
        return self


def load(path: str) -> Scenario:
    from testbed.model.loader import problems_of

    docs = read_docs(path)
    doc = docs[0]
    try:
        return Scenario.model_validate(doc.data)
    except ValidationError as err:
        raise InvalidInput(problems_of(err, doc)) from None
