"""Run a command inside a pod, with `ip netns exec` semantics (the pod's /etc/hosts and /etc/resolv.conf),
and the pod's name as hostname, as in a real pod; or on a machine of the lab. Callers hand over the lab's
plan, which says where each pod lives."""

from __future__ import annotations

from testbed import state
from testbed.errors import EnvironmentProblem, NotFound
from testbed.plan.cluster import Plan, PodPlan
from testbed.runtime import machines
from testbed.runtime.machines import RELAY, Machine, Provider, Result

__all__ = ["Result", "attach", "find", "known", "resolve", "run", "running", "wrap"]


def known(plan: Plan, limit: int = 12) -> str:
    """What a target may be, for an error that lists what exists."""
    pods = [p.key for p in plan.pods]
    more = f" and {len(pods) - limit} more" if len(pods) > limit else ""
    return f"machines: {', '.join(m.name for m in plan.machines())}; pods: {', '.join(pods[:limit])}{more}"


def find(plan: Plan, ref: str) -> tuple[str, PodPlan]:
    """Container name and pod for 'NS/POD' (or 'POD' in namespace default)."""
    container, found = resolve(plan, ref, machines=False)
    assert found is not None
    return container, found


def resolve(plan: Plan, target: str, machines: bool = True) -> tuple[str, PodPlan | None]:
    """The container and pod for 'NS/POD'; a name without '/' is a machine (a node, the router, an external
    host) when one has it, and otherwise a pod in namespace default."""
    ns, _, name = target.rpartition("/")
    if machines and not ns and name in {m.name for m in plan.machines()}:
        return plan.machine(name).container, None
    ns = ns or "default"
    for p in plan.pods:
        if p.namespace == ns and p.name == name:
            return plan.node(p.node).container, p
    what = f"no pod {ns}/{name}" + (f" (nor a machine {target})" if machines and "/" not in target else "")
    raise NotFound(f"{what} in lab {plan.lab} ({known(plan)})")


def wrap(pod: PodPlan | None, command: list[str]) -> list[str]:
    if pod is None:
        return command
    return ["ip", "netns", "exec", pod.netns, "unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"',
            pod.hostname, *command]


def elsewhere(container: str) -> Machine | None:
    """A machine of a lab on another host's engine, as its run folder here records where (machines.elsewhere)."""
    for relay in state.run_root().glob(f"*/*/{RELAY}"):
        where = machines.elsewhere(relay.parent)
        if where is not None and where.container == container:
            return machines.provider(where.engine).get(container)
    return None


def running(container: str, pod: PodPlan | None, provider: Provider | None = None) -> Machine:
    """The target's machine, if it runs; otherwise a clear error (exit 4) that says how to heal."""
    what = f"pod {pod.key} is on node {pod.node}, whose container" if pod else "container"
    machine = (provider or Provider()).get(container) or elsewhere(container)
    if machine is None:
        raise EnvironmentProblem(f"{what} {container} is missing; `testbed up` restarts it and restores its pods")
    return machine.require_running(what)


def attach(plan: Plan, target: str, command: list[str]) -> int:
    """Runs the command on a pseudo-terminal of the pod's node, handed this terminal, as `kubectl exec -it`:
    inside, `tty` names a terminal and full-screen programs follow this window's size."""
    container, p = resolve(plan, target)
    return running(container, p).attach(wrap(p, command))


def run(plan: Plan, target: str, command: list[str], stream: bool = False) -> Result:
    container, p = resolve(plan, target)
    return running(container, p).exec(wrap(p, command), stream)
