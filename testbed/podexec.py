"""Run a command inside a pod, with `ip netns exec` semantics (the pod's /etc/hosts and /etc/resolv.conf),
and the pod's name as hostname, as in a real pod."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from testbed import lab
from testbed.errors import NotFound
from testbed.plan.cluster import PodPlan
from testbed.runtime import docker as rt


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


def find(name: str, pod: str) -> tuple[str, PodPlan]:
    """Container name and pod for 'NS/POD' (or 'POD' in namespace default)."""
    ns, _, podname = pod.rpartition("/")
    ns = ns or "default"
    _, plan = lab.current_plan(name)
    for p in plan.pods:
        if p.namespace == ns and p.name == podname:
            return plan.node(p.node).container, p
    raise NotFound(f"no pod {ns}/{podname} in lab {name}")


def wrap(pod: PodPlan, command: list[str]) -> list[str]:
    return ["ip", "netns", "exec", pod.netns, "unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"',
            pod.name, *command]


def attach(name: str, pod: str, command: list[str]) -> None:
    """Hand this terminal to the command: enter the node's namespaces directly (nsenter) and exec, so job
    control, resizing and signals behave as in any shell. Does not return."""
    container, p = find(name, pod)
    c = rt.get(rt.connect(), container)
    if c is None:
        raise NotFound(f"node container {container} is missing")
    target = str(rt.pid(c))
    os.execvp("nsenter", ["nsenter", "-t", target, "-m", "-u", "-i", "-p", "--", *wrap(p, command)])


def run(name: str, pod: str, command: list[str], stream: bool = False) -> Result:
    container, p = find(name, pod)
    client = rt.connect()
    api = client.api
    exec_id = api.exec_create(container, wrap(p, command))["Id"]
    out: list[bytes] = []
    errs: list[bytes] = []
    for chunk_out, chunk_err in api.exec_start(exec_id, stream=True, demux=True):
        if chunk_out:
            out.append(chunk_out)
            if stream:
                sys.stdout.buffer.write(chunk_out)
                sys.stdout.flush()
        if chunk_err:
            errs.append(chunk_err)
            if stream:
                sys.stderr.buffer.write(chunk_err)
                sys.stderr.flush()
    code = api.exec_inspect(exec_id)["ExitCode"]
    return Result(code if code is not None else 1, b"".join(out).decode(errors="replace"),
                  b"".join(errs).decode(errors="replace"))
