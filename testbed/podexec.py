"""Run a command inside a pod, with `ip netns exec` semantics (the pod's /etc/hosts and /etc/resolv.conf),
and the pod's name as hostname, as in a real pod."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import docker
from docker.models.containers import Container

from testbed import lab
from testbed.errors import EnvironmentProblem, NotFound
from testbed.plan.cluster import PodPlan
from testbed.runtime import docker as rt


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


def find(name: str, pod: str) -> tuple[str, PodPlan]:
    """Container name and pod for 'NS/POD' (or 'POD' in namespace default)."""
    container, found = resolve(name, pod, machines=False)
    assert found is not None
    return container, found


def resolve(name: str, target: str, machines: bool = True) -> tuple[str, PodPlan | None]:
    """The container and pod for 'NS/POD'; a name without '/' is a machine (a node, the router, an external
    host) when one has it, and otherwise a pod in namespace default."""
    ns, _, podname = target.rpartition("/")
    _, plan = lab.current_plan(name)
    if machines and not ns and podname in {m.name for m in plan.machines()}:
        return plan.machine(podname).container, None
    ns = ns or "default"
    for p in plan.pods:
        if p.namespace == ns and p.name == podname:
            return plan.node(p.node).container, p
    raise NotFound(f"no pod {ns}/{podname} (nor a machine {target}) in lab {name}")


def wrap(pod: PodPlan | None, command: list[str]) -> list[str]:
    if pod is None:
        return command
    return ["ip", "netns", "exec", pod.netns, "unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"',
            pod.hostname, *command]


def running(client: docker.DockerClient, container: str, pod: PodPlan | None) -> Container:
    """The target's container, if it runs; otherwise a clear error (exit 4) that says how to heal."""
    c = rt.get(client, container)
    state = "missing" if c is None else c.status
    if c is None or state != "running":
        what = f"pod {pod.key} is on node {pod.node}, whose container" if pod else "container"
        raise EnvironmentProblem(f"{what} {container} is {state}; `testbed up` restarts it and restores its pods")
    return c


def attach(name: str, pod: str, command: list[str]) -> None:
    """Hand this terminal to the command: enter the node's namespaces directly (nsenter) and exec, so job
    control, resizing and signals behave as in any shell. Does not return."""
    container, p = resolve(name, pod)
    target = str(rt.pid(running(rt.connect(), container, p)))
    os.execvp("nsenter", ["nsenter", "-t", target, "-m", "-u", "-i", "-p", "--", *wrap(p, command)])


def run(name: str, pod: str, command: list[str], stream: bool = False) -> Result:
    container, p = resolve(name, pod)
    client = rt.connect()
    running(client, container, p)
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
