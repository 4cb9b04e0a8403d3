"""Outages a client sees, measured with `testbed fault ... --measure` (a probe every 10 ms from inside a pod):
one of a 3-endpoint ClusterIP's pods killed, its node stopped, its node paused (hung); the router restarted in
bgp mode, for a pod-to-pod flow across nodes; one of two DNS servers stopped, for lookups. And the time from a
node container's restart until its pods answer again, with no `up`. All traffic stays in the lab."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import yaml
from common import ROOT, lab_up, quiet
from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

from testbed import faults, lab, state
from testbed.faults import session
from testbed.observe.probe import probe
from testbed.runtime import agent, podexec
from testbed.runtime import docker as rt

FAULTS = ROOT / "tests" / "e2e" / "faults.yaml"
PERIOD = 0.01
RATES = (5000, 10000, 20000, 40000)  # offered UDP packets/s through the delayer
SECONDS = 3


def _outage(name: str, kind: str, args: dict, target: str, lasts: float | None = None, protocol: str = "tcp",
            source: str = "default/a") -> float:
    got = session.run(name, kind, args, lasts, {"from": source, "target": target, "protocol": protocol,
                                                "period": PERIOD}, timeout=60)
    return got["measure"]["outageSeconds"]


@retry(retry=retry_if_result(lambda ok: not ok), stop=stop_after_delay(30), wait=wait_fixed(0.01))
def _answers(name: str, target: str) -> bool:
    _, plan = lab.current_plan(name)
    return probe(plan, "default/a", target, timeout=0.5)["result"] == "connected"


def _delayer_rate(ctx) -> float:
    """The highest offered rate (64-byte UDP datagrams, iperf3 from node1 to node2 with a 5 ms delay on node1)
    that the NFQUEUE delayer carries with under 1 % lost and no packet passed undelayed."""
    name, plan = ctx.lab, ctx.plan
    client, server = podexec.find(plan, "default/a")[1], podexec.find(plan, "default/srv")[1]
    box = ctx.machine(client.node).container
    fault = faults.inject(name, "delay", {"node": client.node, "ms": 5})
    best = 0.0
    try:
        for pps in RATES:
            before = agent.call(state.run_dir(name) / client.node, "delay")
            code, out, _ = rt.exec_in(box, podexec.wrap(client, ["iperf3", "-c", server.ipv4, "-u", "-l", "64",
                                                                 "-b", str(pps * 64 * 8), "-t", str(SECONDS),
                                                                 "-J"]))
            after = agent.call(state.run_dir(name) / client.node, "delay")
            if code != 0:
                break
            got = json.loads(out)["end"]["sum"]
            carried = (got["packets"] - got["lost_packets"]) / SECONDS
            print(f"  delayer at {pps}/s offered: {carried:.0f}/s carried, {got['lost_percent']:.2f} % lost, "
                  f"{after['overflow'] - before['overflow']} passed undelayed", flush=True)
            if got["lost_percent"] >= 1 or after["overflow"] != before["overflow"]:
                break
            best = carried
    finally:
        faults.clear(name, fault.id)
    return best


def run() -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        topo = yaml.safe_load(FAULTS.read_text())
        topo["name"] = "bench-faults"
        path = Path(tmp) / "faults.yaml"
        path.write_text(yaml.safe_dump(topo))
        with lab_up(path) as ctx:
            name, plan = ctx.lab, ctx.plan
            out["delayer_packets_per_s"] = _delayer_rate(ctx)
            web = next(p for p in plan.pods if p.labels.get("app") == "web" and p.node == "node2")
            out["outage_endpoint_pod_killed_s"] = _outage(name, "kill", {"pod": web.key}, "svc/default/web:80")
            out["outage_endpoint_node_stopped_s"] = _outage(name, "node-stop", {"node": "node2"},
                                                            "svc/default/web:80", lasts=12)
            lab.up(path, say=quiet)
            out["outage_endpoint_node_paused_s"] = _outage(name, "node-pause", {"node": "node3"},
                                                           "svc/default/web:80", lasts=12)
            lab.up(path, say=quiet)
            dns = next(p for p in lab.current_plan(name)[1].pods if p.namespace == "kube-system")
            out["dns_failed_lookups_one_server_stopped_s"] = _outage(
                name, "node-stop", {"node": dns.node}, "web.default.svc.cluster.local", lasts=12, protocol="dns",
                source="default/a" if dns.node != "node1" else "default/b")
            lab.up(path, say=quiet)
            b = lab.current_plan(name)[1].pods
            target = next(p for p in b if p.key == "default/b")
            start = time.perf_counter()
            session.run(name, "node-restart", {"node": "node2"})
            _answers(name, f"{target.ipv4}:8080")
            out["node_restart_until_pods_answer_s"] = time.perf_counter() - start
        bgp = dict(topo, name="bench-faults-bgp", networking={"network": "bgp"})
        path.write_text(yaml.safe_dump(bgp))
        with lab_up(path) as ctx:
            c = next(p for p in ctx.plan.pods if p.key == "default/c")
            out["outage_router_restart_bgp_s"] = _outage(ctx.lab, "router-restart", {}, f"{c.ipv4}:8080")
    return out
