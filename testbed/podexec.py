"""Run a command inside a pod, with `ip netns exec` semantics (the pod's /etc/hosts and /etc/resolv.conf),
and the pod's name as hostname, as in a real pod."""

from __future__ import annotations

from testbed import lab
from testbed.errors import EnvironmentProblem, NotFound
from testbed.plan.cluster import PodPlan
from testbed.runtime.machines import Machine, Provider, Result

__all__ = ["Result", "attach", "find", "resolve", "run", "running", "wrap"]


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


def running(container: str, pod: PodPlan | None, provider: Provider | None = None) -> Machine:
    """The target's machine, if it runs; otherwise a clear error (exit 4) that says how to heal."""
    what = f"pod {pod.key} is on node {pod.node}, whose container" if pod else "container"
    machine = (provider or Provider()).get(container)
    if machine is None:
        raise EnvironmentProblem(f"{what} {container} is missing; `testbed up` restarts it and restores its pods")
    return machine.require_running(what)


def attach(name: str, pod: str, command: list[str]) -> int:
    """Runs the command on a pseudo-terminal of the pod's node, handed this terminal, as `kubectl exec -it`:
    inside, `tty` names a terminal and full-screen programs follow this window's size."""
    container, p = resolve(name, pod)
    return running(container, p).attach(wrap(p, command))


def run(name: str, pod: str, command: list[str], stream: bool = False) -> Result:
    container, p = resolve(name, pod)
    return running(container, p).exec(wrap(p, command), stream)
