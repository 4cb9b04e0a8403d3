"""A container's readinessProbe (v1.Probe), as the API server checks it: exactly one handler (exec, tcpSocket or
httpGet; grpc is refused, as nothing here speaks it), and the timings with their defaults and bounds."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from testbed.model.meta import Loose as _Loose
from testbed.model.names import port_or_name


class ExecAction(_Loose):
    command: list[str] = Field(min_length=1)


class TCPSocketAction(_Loose):
    port: int | str

    _check = field_validator("port")(classmethod(lambda cls, v: port_or_name(v)))


class HTTPGetAction(_Loose):
    port: int | str
    path: str = "/"
    scheme: Literal["HTTP", "HTTPS"] = "HTTP"

    _check = field_validator("port")(classmethod(lambda cls, v: port_or_name(v)))


class Probe(_Loose):
    exec: ExecAction | None = None
    tcpSocket: TCPSocketAction | None = None
    httpGet: HTTPGetAction | None = None
    initialDelaySeconds: int = Field(0, ge=0)
    periodSeconds: int = Field(10, ge=1)
    timeoutSeconds: int = Field(1, ge=1)
    successThreshold: int = Field(1, ge=1)
    failureThreshold: int = Field(3, ge=1)

    @model_validator(mode="after")
    def _one_handler(self) -> Probe:
        if "grpc" in (self.model_extra or {}):
            raise ValueError("grpc probes are not supported (use exec, tcpSocket or httpGet)")
        given = [h for h in ("exec", "tcpSocket", "httpGet") if getattr(self, h) is not None]
        if len(given) != 1:
            raise ValueError(f"exactly one of exec, tcpSocket or httpGet is needed, got {len(given)}")
        return self

    def undeclared_port(self, names: set[str | None]) -> str | None:
        """The port name this probe dials that its container does not declare (None when there is none)."""
        handler = self.tcpSocket or self.httpGet
        return handler.port if handler and isinstance(handler.port, str) and handler.port not in names else None

    def resolved(self, ports: dict[str, int]) -> dict[str, Any]:
        """What the agent runs: the handler with a named port resolved against the container's ports
        (KeyError for a name the container does not declare)."""
        timings = {"initialDelay": self.initialDelaySeconds, "period": self.periodSeconds,
                   "timeout": self.timeoutSeconds, "success": self.successThreshold,
                   "failure": self.failureThreshold}
        if self.exec is not None:
            return {"kind": "exec", "command": self.exec.command, **timings}
        handler = self.tcpSocket or self.httpGet
        assert handler is not None
        port = handler.port if isinstance(handler.port, int) else ports[handler.port]
        if self.httpGet is not None:
            return {"kind": "http", "port": port, "path": self.httpGet.path, "scheme": self.httpGet.scheme,
                    **timings}
        return {"kind": "tcp", "port": port, **timings}
