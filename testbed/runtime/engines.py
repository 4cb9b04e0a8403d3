"""Which Docker engine, as the docker CLI picks it: an endpoint given (`unix://`, `tcp://` with or without TLS,
`ssh://`), else DOCKER_HOST (with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH), else DOCKER_CONTEXT or the current
context of ~/.docker/config.json, else the local socket. Pure, apart from reading the CLI's files."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from testbed.errors import EnvironmentProblem

LOCAL = "unix:///var/run/docker.sock"
SCHEMES = ("unix://", "tcp://", "ssh://", "npipe://")


@dataclass(frozen=True)
class Endpoint:
    host: str  # as the SDK takes it: unix:///path, tcp://ADDR:PORT, ssh://user@host
    tls: str | None = None  # a folder with ca.pem, cert.pem and key.pem: verify the engine, and show ours
    source: str = "default"  # where it came from, for error messages

    @property
    def local(self) -> bool:
        """Whether its containers run on this machine, in its PID namespace: a socket here, or loopback TCP."""
        rest = self.host.split("://", 1)[1]
        return self.host.startswith("unix://") or rest.startswith(("127.", "localhost", "[::1]"))

    def __post_init__(self) -> None:
        if not self.host.startswith(SCHEMES):
            raise EnvironmentProblem(f"Docker endpoint {self.host!r} ({self.source}): not unix://, tcp:// or "
                                     "ssh://")


def _docker_dir() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def context(name: str) -> Endpoint:
    """A docker context, as `docker context create NAME --docker host=...` stores it."""
    if name == "default":
        return Endpoint(LOCAL, source="context default")
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = _docker_dir() / "contexts" / "meta" / digest / "meta.json"
    try:
        docker = json.loads(meta.read_text())["Endpoints"]["docker"]
    except (OSError, ValueError, KeyError, TypeError):
        raise EnvironmentProblem(f"no docker context {name!r} ({meta} is missing or unreadable); "
                                 "`docker context ls` lists them") from None
    tls = _docker_dir() / "contexts" / "tls" / digest / "docker"
    verify = not docker.get("SkipTLSVerify", False)
    return Endpoint(docker["Host"], str(tls) if verify and (tls / "ca.pem").exists() else None,
                    f"context {name}")


def resolve(given: str | None = None, env: dict[str, str] | None = None) -> Endpoint:
    env = dict(os.environ) if env is None else env
    if given:
        return context(given.removeprefix("context:")) if given.startswith("context:") else \
            Endpoint(given, source="given")
    if host := env.get("DOCKER_HOST"):
        tls = env.get("DOCKER_CERT_PATH") or str(_docker_dir()) if env.get("DOCKER_TLS_VERIFY") else None
        return Endpoint(host, tls, "DOCKER_HOST")
    name = env.get("DOCKER_CONTEXT")
    if not name:
        try:
            name = json.loads((_docker_dir() / "config.json").read_text()).get("currentContext")
        except (OSError, ValueError, AttributeError):
            name = None
    return context(name) if name else Endpoint(LOCAL)
