"""What a lab looks like right now: planned state joined with what the engine and the agents report."""

from __future__ import annotations

import contextlib
from typing import Any

from testbed import lab, state
from testbed.network import underlay
from testbed.network.vxlan import DEVICE
from testbed.runtime import agent
from testbed.runtime import docker as rt


def collect(name: str) -> dict[str, Any]:
    st, plan = lab.current_plan(name)
    client = rt.connect()
    running = {c.labels.get(rt.NODE): c.status for c in rt.containers(client, name)}
    seen: dict[str, dict[str, Any]] = {}  # netns → what the node's agent reports
    for node in plan.nodes:
        with contextlib.suppress(OSError, agent.AgentError):
            reply = agent.call(state.run_root() / name / node.name, "status", timeout=10)
            seen |= {p["netns"]: p for p in reply["pods"]}

    def ready(netns: str, ports: int) -> bool:
        got = seen.get(netns)
        return bool(got and got["present"] and got["listening"] + len(got["errors"]) == ports)
    nodes = [{"name": n.name, "container": n.container, "state": running.get(n.name, "missing"),
              "underlayIP": n.underlay_ip, "podCIDRs": [c for c in (n.cidr4, n.cidr6) if c],
              "vtepMAC": n.vtep_mac, "labels": n.labels} for n in plan.nodes]
    pods = [{"namespace": p.namespace, "name": p.name, "node": p.node,
             "ips": [ip for ip in (p.ipv4, p.ipv6) if ip],
             "ports": [f"{x.port}/{x.protocol}" for x in p.ports],
             "ready": ready(p.netns, len(p.ports)),
             "warnings": seen.get(p.netns, {}).get("errors", [])} for p in plan.pods]
    links = [{"type": "underlay", "from": n.name, "fromIf": underlay.NODE_IF,
              "to": underlay.ns_name(name), "toIf": underlay.fabric_if(n.name)} for n in plan.nodes]
    links += [{"type": plan.topology.networking.network, "from": a.name, "fromIf": DEVICE, "to": b.name,
               "toIf": DEVICE} for a in plan.nodes for b in plan.nodes if a.index < b.index]
    return {"name": name, "phase": st.phase, "topology": st.topology_file, "underlay": str(plan.underlay),
            "dualStack": plan.topology.networking.dualStack, "network": plan.topology.networking.network,
            "podMTU": plan.topology.networking.pod_mtu, "nodes": nodes, "pods": pods, "links": links}
