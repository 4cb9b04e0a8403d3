"""What the Ingress and Gateway API tests share: requests from the external host ext2 with curl, to a host name
resolved to an address as `curl --resolve` does (so the Host header and SNI are the name), and their answers."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any

import docker

from testbed.pytest_plugin import Lab

CLIENT = "ext2"


@dataclass
class Answer:
    code: int
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: str = ""

    @property
    def doc(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def pod(self) -> str:
        return self.doc["pod"]

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


def client(lab: Lab) -> Any:
    return docker.from_env().containers.get(lab.plan.machine(CLIENT).container)


def address(lab: Lab, gateway: str | None = None) -> str:
    """The ingress proxy's LoadBalancer address, or a Gateway's (from its status)."""
    if gateway is None:
        svc = next(s for s in lab.plan.services if s.key == "testbed-ingress/ingress")
        return svc.lb_ips[0]
    return lab.plan.edge.status[f"Gateway/{gateway}"]["addresses"][0]["value"]


def get(lab: Lab, host: str, path: str = "/", ip: str | None = None, port: int | None = None,
        scheme: str = "http", headers: dict[str, str] | None = None, method: str = "GET",
        ca: bool = True) -> Answer:
    """One request from ext2; a transport failure is code 0 with curl's message as the body."""
    ip = ip or address(lab)
    port = port or (443 if scheme == "https" else 80)
    argv = ["curl", "-sS", "-i", "--max-time", "5", "-X", method, "--resolve", f"{host}:{port}:{ip}"]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    if scheme == "https":
        argv += ["--cacert", "/tmp/testbed-ca.pem"] if ca else ["-k"]
    argv.append(f"{scheme}://{host}:{port}{path}")
    result = client(lab).exec_run(argv)
    text = result.output.decode(errors="replace")
    if result.exit_code != 0:
        return Answer(0, {}, text)
    head, _, body = text.replace("\r\n", "\n").partition("\n\n")
    while head.startswith("HTTP/") and body.startswith("HTTP/"):  # a 100 Continue before the answer
        head, _, body = body.partition("\n\n")
    lines = head.splitlines()
    got: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        got.setdefault(name.strip().lower(), []).append(value.strip())
    return Answer(int(lines[0].split()[1]), got, body)


def trust(lab: Lab, pem: str) -> None:
    """ext2 trusts the lab's CA (a public certificate)."""
    client(lab).exec_run(["sh", "-c", f"printf %s {shlex.quote(pem)} > /tmp/testbed-ca.pem"])


def served_by(lab: Lab, host: str, path: str = "/", **kw: Any) -> str:
    """Which Deployment's pod answered (web, api, foreign...), or the status code when it was not 200."""
    answer = get(lab, host, path, **kw)
    if answer.code != 200:
        return str(answer.code)
    return answer.pod.split("-")[0]
