"""What a lab looks like right now, observed: containers from the engine, links and pods from each node's agent
and from the fabric's namespace. The plan only says what to look for; a difference makes the lab `degraded`,
with the reasons and a hint that `testbed up` heals it."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from testbed import lab, netns, readiness, state
from testbed.agent.processes import process_name
from testbed.agent.version import code_version
from testbed.errors import EnvironmentProblem, NotFound
from testbed.network import underlay
from testbed.network.registry import mode
from testbed.plan.cluster import NodePlan, Plan
from testbed.runtime import agent
from testbed.runtime.machines import Provider

HEAL = "`testbed up` heals it"


def _fabric_ports(name: str) -> dict[str, bool]:
    """The fabric's veth ends as they are: name → up."""
    path = os.path.join(netns.HOST_NETNS_DIR, underlay.ns_name(name))
    if not os.path.exists(path):
        return {}
    with contextlib.suppress(OSError), netns.ipr(path) as fab:
        return {link.get_attr("IFLA_IFNAME"): bool(link["flags"] & 1) for link in fab.get_links()}
    return {}


def _agents(name: str, plan: Plan, running: dict[str, str]) -> dict[str, dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for node in plan.nodes:
        if running.get(node.name) != "running":
            continue
        with contextlib.suppress(OSError, agent.AgentError):
            seen[node.name] = agent.call(state.run_dir(name) / node.name, "status", timeout=10)
    return seen


def _link(kind: str, a: str, a_if: str, b: str, b_if: str, up: bool | None) -> dict[str, Any]:
    return {"type": kind, "from": a, "fromIf": a_if, "to": b, "toIf": b_if,
            "state": "missing" if up is None else "up" if up else "down"}


def collect(name: str) -> dict[str, Any]:
    st, plan = lab.current_plan(name)
    running = {m.name: m.state for m in Provider().machines(name)}
    agents = _agents(name, plan, running)
    fabric = _fabric_ports(name)
    node_links = {n: {link["name"]: link["up"] for link in reply.get("links", [])} for n, reply in agents.items()}
    pods_seen = {p["netns"]: p for reply in agents.values() for p in reply["pods"]}
    reasons: list[str] = []

    nodes = []
    for n in plan.nodes:
        container_state = running.get(n.name, "missing")
        reply = agents.get(n.name)
        agent_state = "answering" if reply else "not answering"
        if container_state != "running":
            reasons.append(f"node {n.name}: container {n.container} is {container_state}")
        elif reply is None:
            reasons.append(f"node {n.name}: its agent does not answer")
        elif reply.get("version") != code_version():
            agent_state = "outdated"
            reasons.append(f"node {n.name}: its agent runs older code")
        nodes.append({"name": n.name, "container": n.container, "state": container_state, "agent": agent_state,
                      "underlayIP": n.underlay_ip, "podCIDRs": [c for c in (n.cidr4, n.cidr6) if c],
                      "vtepMAC": n.vtep_mac, "labels": n.labels})

    def both(a: bool | None, b: bool | None) -> bool | None:
        return None if a is None or b is None else a and b

    links = []
    for n in plan.nodes:
        port = underlay.fabric_if(n.name)
        links.append(_link("underlay", n.name, underlay.NODE_IF, underlay.ns_name(name), port,
                           both(node_links.get(n.name, {}).get(underlay.NODE_IF), fabric.get(port))))
    network = plan.topology.networking.network
    device = mode(network).device
    routes = {n: {r["dst"] for r in reply.get("routes", [])} for n, reply in agents.items()}

    def carries(a: str, b: NodePlan) -> bool | None:
        """a has its device up (if the mode has one) and a route to b's pod range."""
        if a not in agents:
            return None
        up = node_links.get(a, {}).get(device) if device else True
        return None if up is None else bool(up and b.cidr4 in routes[a])

    links += [_link(network, a.name, device or "eth0", b.name, device or "eth0", both(carries(a.name, b),
                                                                                     carries(b.name, a)))
              for a in plan.nodes for b in plan.nodes if a.index < b.index]
    reasons += [f"link {x['type']} {x['from']}:{x['fromIf']} → {x['to']}:{x['toIf']} is {x['state']}"
                for x in links if x["state"] != "up"]

    supervised = {d["name"]: d for reply in agents.values() for d in reply.get("daemons", [])}
    pods = []
    for p in plan.pods:
        got = pods_seen.get(p.netns)
        present = bool(got and got["present"])
        procs = [{"container": c, **supervised.get(process_name(p.netns, c), {"state": "missing", "restarts": 0,
                                                                               "lastExit": None})}
                 for c in p.processes]
        if p.processes:  # its own processes serve its ports
            ready = present and all(x["state"] == "running" for x in procs)
            # a process that ended for good, as its restartPolicy says, is the pod's state, not the lab's fault
            if present and any(x["state"] not in ("running", "completed", "failed") for x in procs):
                reasons.append(f"pod {p.key}: " + ", ".join(f"{x['container']} is {x['state']} (last exit "
                                                            f"{x['lastExit']})" for x in procs
                                                            if x["state"] != "running"))
        else:
            ready = bool(present and got and got["listening"] + len(got["errors"]) == len(p.ports))
            if present and not ready:
                reasons.append(f"pod {p.key}: not serving its ports")
        if p.probes:  # not ready while its readiness probe fails: a state of the pod, not a fault of the lab
            ready = ready and p.ready
        if not present:
            reasons.append(f"pod {p.key}: missing")
        pods.append({"namespace": p.namespace, "name": p.name, "node": p.node,
                     "ips": [ip for ip in (p.ipv4, p.ipv6) if ip], "ports": [f"{x.port}/{x.protocol}" for x in p.ports],
                     "present": present, "ready": ready, "restarts": sum(x["restarts"] for x in procs),
                     "processes": procs, "warnings": got.get("errors", []) if got else []})

    machines = []
    for m in [*([plan.router] if plan.router else []), *plan.externals]:
        container_state = running.get(m.name, "missing")
        if container_state != "running":
            reasons.append(f"{m.role} {m.name}: container {m.container} is {container_state}")
        addresses = ([m.underlay_ip, m.external_ip, m.underlay_ip6, m.external_ip6] if m is plan.router
                     else [m.ip, m.ip6])  # type: ignore[union-attr]
        machines.append({"name": m.name, "role": m.role, "container": m.container, "state": container_state,
                         "ips": [a for a in addresses if a]})
    extra = mode(network).status(plan, state.run_dir(name))
    for machine, info in extra.items():
        reasons += [f"{machine}: BGP session {x['name']} is {x['info']}" for x in info.get("sessions", [])
                    if x["info"] != "Established"]

    controller = readiness.running(name)
    if any(p.probes for p in plan.pods) and controller is None and st.phase == "ready":
        reasons.append("the readiness controller is not running: endpoints no longer follow readiness probes")
    if st.phase != "ready":
        phase, hint = st.phase, (f"the last command stopped before it finished; `testbed up {st.topology_file}` "
                                 f"finishes it, `testbed down {name}` removes it")
    elif reasons:
        phase, hint = "degraded", HEAL
    else:
        phase, hint = "ready", ""
    return {"name": name, "phase": phase, "reasons": reasons, "hint": hint, "topology": st.topology_file,
            "underlay": str(plan.underlay), "dualStack": plan.topology.networking.dualStack, "network": network,
            "podMTU": plan.topology.networking.pod_mtu, "kubeProxy": plan.topology.kubeProxy.mode,
            "nodes": nodes, "machines": machines, "pods": pods, "services": services(plan), "links": links,
            "controller": {"pid": controller}, network: extra}


ROUTE_TYPES = {1: "unicast", 6: "blackhole", 7: "unreachable", 8: "prohibit"}


def routes(name: str, machine: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Each machine's main routing table as its agent sees it, with the protocol that installed each route."""
    _, plan = lab.current_plan(name)
    names = [machine] if machine else [*(n.name for n in plan.nodes), *([plan.router.name] if plan.router else [])]
    known = {m.name for m in plan.machines()}
    out: dict[str, list[dict[str, Any]]] = {}
    for m in names:
        if m not in known:
            raise NotFound(f"no machine {m} in lab {name} (machines: {', '.join(sorted(known))})")
        try:
            reply = agent.call(state.run_dir(name) / m, "status", timeout=10)
        except (OSError, agent.AgentError) as err:
            raise EnvironmentProblem(f"{m} does not answer ({err}); `testbed status` says why") from None
        out[m] = [{**r, "protocol": netns.PROTO_NAMES.get(r.pop("proto"), "other"),
                   "type": ROUTE_TYPES.get(r["type"], str(r["type"]))} for r in reply.get("routes", [])
                  if r["type"] in ROUTE_TYPES]
    return out


def services(plan: Plan) -> list[dict[str, Any]]:
    """The Services as planned: allocations and endpoints (endpoints follow pods and their readiness)."""
    return [{"namespace": s.namespace, "name": s.name, "type": s.type, "clusterIPs": s.cluster_ips,
             "headless": s.headless, "externalName": s.external_name, "externalIPs": s.external_ips,
             "loadBalancerIPs": s.lb_ips,
             "ports": [{"name": p.name, "port": p.port, "protocol": p.protocol, "targetPort": p.target,
                        "nodePort": p.node_port} for p in s.ports],
             "endpoints": [{"ips": e.ips, "node": e.node, "pod": e.pod, "ready": e.ready, "ports": e.ports}
                           for e in s.endpoints],
             "sessionAffinity": "ClientIP" if s.affinity_timeout else "None",
             "externalTrafficPolicy": "Local" if s.external_local else "Cluster",
             "internalTrafficPolicy": "Local" if s.internal_local else "Cluster",
             "trafficDistribution": s.distribution} for s in plan.services]
