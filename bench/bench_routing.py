"""The bgp mode's clocks: `up` of the bgp topology (CLI included), the router withdrawing a stopped node's routes,
routes back after the node is started and `up` runs, routes back after the router's BGP daemon is killed (its
supervisor restarts it, nothing else), and `move` until the pod answers from every node and from outside.
Polls are bounded; all traffic stays in the lab."""

from __future__ import annotations

import subprocess
import sys
import time

import docker
from common import ROOT, quiet, timed
from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

from testbed import lab
from testbed.observe.status import routes
from testbed.pytest_plugin import Lab

TOPOLOGY = ROOT / "topologies" / "bgp.yaml"


@retry(retry=retry_if_result(lambda ok: not ok), stop=stop_after_delay(60), wait=wait_fixed(0.02))
def _router_has(name: str, cidr: str, present: bool) -> bool:
    return (cidr in {r["dst"] for r in routes(name, "router")["router"]}) == present


def _since(start: float) -> float:
    return time.perf_counter() - start


def _up_cli() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "testbed", "up", "-q", str(TOPOLOGY)], check=True,
                   capture_output=True)
    return _since(start)


def run() -> dict[str, float]:
    out: dict[str, float] = {}
    client = docker.from_env()
    name = lab.up(TOPOLOGY, say=quiet).lab
    lab.down(name, say=quiet)
    try:
        out["bgp_up_s"] = _up_cli()
        plan = Lab(name).plan
        node3 = plan.node("node3")
        start = time.perf_counter()
        client.containers.get(node3.container).stop(timeout=0)
        _router_has(name, node3.cidr4, False)
        out["bgp_withdraw_after_node_stop_s"] = _since(start)
        client.containers.get(node3.container).start()
        start = time.perf_counter()
        lab.up(TOPOLOGY, say=quiet)
        _router_has(name, node3.cidr4, True)
        out["bgp_routes_back_after_node_start_and_up_s"] = _since(start)

        router = client.containers.get(plan.router.container)
        start = time.perf_counter()
        router.exec_run(["pkill", "-9", "-x", "bird"])
        _router_has(name, node3.cidr4, False)
        _router_has(name, node3.cidr4, True)
        out["bgp_routes_back_after_router_daemon_kill_s"] = _since(start)

        pod = next(p for p in Lab(name).pods("default", app="web"))
        to = next(n.name for n in plan.nodes if n.name != pod.node)
        took, _ = timed(lambda: lab.move(name, pod.key, to, say=quiet))
        for node in plan.nodes:
            code = client.containers.get(node.container).exec_run(
                ["curl", "-s", "--max-time", "2", f"http://{pod.ipv4}:8080/hostname"]).exit_code
            assert code == 0, f"{node.name} cannot reach the moved pod"
        out["move_s"] = took
    finally:
        lab.down(name, say=quiet)
    return out


if __name__ == "__main__":
    print(run())
