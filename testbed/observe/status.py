"""What a lab looks like right now, observed: containers from the engine, links and pods from each machine's
agent and from the fabric's namespace, and every registered module's quick checks (the pipeline's steps, in
order). The plan only says what to look for; a failed or warned check makes the lab `degraded`, with the
reasons and a hint that `testbed up` heals it."""

from __future__ import annotations

import time
from typing import Any

from testbed import checks, lab
from testbed.agent.processes import process_name
from testbed.agent.version import code_version
from testbed.checks import HEAL, Finding, Observation
from testbed.errors import EnvironmentProblem, NotFound
from testbed.network import underlay
from testbed.network.registry import mode
from testbed.plan.cluster import NodePlan, Plan
from testbed.plan.services import ServicePlan
from testbed.runtime import readiness


def findings(obs: Observation, deep: bool) -> list[Finding]:
    """Every step of the lab's pipeline that checks what it made, in the pipeline's order."""
    steps = [s for s in lab.pipeline(obs.plan.topology) if hasattr(s, "check")]
    return checks.run(steps, obs, deep)  # type: ignore[arg-type]


def _link(kind: str, a: str, a_if: str, b: str, b_if: str, up: bool | None) -> dict[str, Any]:
    return {"type": kind, "from": a, "fromIf": a_if, "to": b, "toIf": b_if,
            "state": "missing" if up is None else "up" if up else "down"}


def _both(a: bool | None, b: bool | None) -> bool | None:
    return None if a is None or b is None else a and b


def _links(obs: Observation, agents: dict[str, Any]) -> list[dict[str, Any]]:
    plan = obs.plan
    fabric = {f.host: f.name for f in plan.fabrics}
    ends = {f: underlay.segment_ports((obs.call(f, "inspect") or {}).get("links")) for f in fabric.values()}
    node_links = {n: {x["name"]: x["up"] for x in reply.get("links", [])} for n, reply in agents.items() if reply}
    out = [_link("underlay", n.name, underlay.NODE_IF, fabric[n.host], underlay.fabric_if(n.name),
                 _both(node_links.get(n.name, {}).get(underlay.NODE_IF),
                       ends[fabric[n.host]].get(underlay.fabric_if(n.name))))
           for n in plan.nodes]
    network = plan.topology.networking.network
    device = mode(network).device
    routes = {n: {r["dst"] for r in reply.get("routes", [])} for n, reply in agents.items() if reply}

    def carries(a: str, b: NodePlan) -> bool | None:
        """a has its device up (if the mode has one) and a route to b's pod range."""
        if a not in routes:
            return None
        up = node_links.get(a, {}).get(device) if device else True
        return None if up is None else bool(up and b.cidr4 in routes[a])

    return out + [_link(network, a.name, device or "eth0", b.name, device or "eth0",
                        _both(carries(a.name, b), carries(b.name, a)))
                  for a in plan.nodes for b in plan.nodes if a.index < b.index]


def _pods(plan: Plan, agents: dict[str, Any]) -> list[dict[str, Any]]:
    seen = {p["netns"]: p for reply in agents.values() if reply for p in reply["pods"]}
    supervised = {d["name"]: d for reply in agents.values() if reply for d in reply.get("daemons", [])}
    out = []
    for p in plan.pods:
        got = seen.get(p.netns)
        present = bool(got and got["present"])
        procs = [{"container": c, **supervised.get(process_name(p.netns, c), {"state": "missing", "restarts": 0,
                                                                               "lastExit": None})}
                 for c in p.processes]
        if got and not got.get("wired", True):  # its CNI plugins failed: no network, no containers
            ready = False
        elif p.processes:  # its own processes serve its ports
            ready = present and all(x["state"] == "running" for x in procs)
        else:
            ready = bool(present and got and got["listening"] + len(got["errors"]) == len(p.ports))
        if p.probes:  # not ready while its readiness probe fails: a state of the pod, not a fault of the lab
            ready = ready and p.ready
        out.append({"namespace": p.namespace, "name": p.name, "node": p.node,
                    "ips": [ip for ip in (p.ipv4, p.ipv6) if ip], "ports": [f"{x.port}/{x.protocol}" for x in p.ports],
                    "present": present, "ready": ready,
                    "restarts": sum(x["restarts"] for x in procs) + (got.get("restarts", 0) if got else 0),
                    "processes": procs, "warnings": got.get("errors", []) if got else []})
    return out


def collect(name: str) -> dict[str, Any]:
    st, plan = lab.synced_plan(name)
    obs = Observation(plan)
    found = findings(obs, deep=False)
    agents = obs.ask_all("status", [m.name for m in plan.machines()])
    reasons = [f"host {host} does not answer: {why}" for host, why in obs.unreachable.items()]
    reasons += [f.message for f in found if f.status != "ok"]

    nodes = []
    for n in plan.nodes:
        reply = agents.get(n.name)
        agent_state = "not answering" if reply is None else \
            "outdated" if reply.get("version") != code_version() else "answering"
        cond = st.conditions.get(n.name, {"ready": True, "since": None})
        nodes.append({"name": n.name, "host": n.host, "container": n.container, "state": obs.state(n.name),
                      "agent": agent_state,
                      "condition": {"ready": cond["ready"], "since": cond.get("since"),
                                    "evicted": cond.get("evicted", False)},
                      "underlayIP": n.underlay_ip, "podCIDRs": [c for c in (n.cidr4, n.cidr6) if c],
                      "vtepMAC": n.vtep_mac, "labels": n.labels})
        if not cond["ready"]:
            reasons.append(f"node {n.name} is NotReady since {time.strftime('%H:%M:%S', time.localtime(cond['since']))}"
                           + (", its Deployment pods evicted" if cond.get("evicted") else ""))
    machines = []
    for m in [*([plan.router] if plan.router else []), *plan.externals, *plan.fabrics]:
        addresses = ([m.underlay_ip, m.external_ip, m.underlay_ip6, m.external_ip6] if m is plan.router
                     else [] if m.role == "fabric" else [m.ip, m.ip6])  # type: ignore[union-attr]
        machines.append({"name": m.name, "role": m.role, "host": m.host, "container": m.container,
                         "state": obs.state(m.name), "ips": [a for a in addresses if a]})
    links = _links(obs, agents)
    reasons += [f"link {x['type']} {x['from']}:{x['fromIf']} → {x['to']}:{x['toIf']} is {x['state']}"
                for x in links if x["state"] != "up" and x["type"] != "underlay"]
    network = plan.topology.networking.network
    extra = mode(network).status(plan, obs.run_dir)
    controller = readiness.running(name)
    if controller is None and st.phase == "ready" and not readiness.supervised(name):
        reasons.append("the lab's controller is not running: nothing follows probes, heartbeats or machines")
    if st.phase != "ready":
        phase, hint = st.phase, (f"the last command stopped before it finished; `testbed up {st.topology_file}` "
                                 f"finishes it, `testbed down {name}` removes it")
    elif any(f.status == "fail" for f in found) or len(reasons) > sum(f.status == "warn" for f in found):
        phase, hint = "degraded", HEAL
    else:
        phase, hint = "ready", ""
    return {"name": name, "phase": phase, "reasons": reasons, "hint": hint, "topology": st.topology_file,
            "underlay": str(plan.underlay), "dualStack": plan.topology.networking.dualStack, "network": network,
            "podMTU": plan.pod_mtu, "kubeProxy": plan.topology.kubeProxy.mode,
            "nodes": nodes, "machines": machines, "pods": _pods(plan, agents), "services": services(plan),
            "links": links, "controller": {"pid": controller}, network: extra,
            "edge": {"status": plan.edge.status, "warnings": plan.edge.warnings}, "faults": st.faults,
            "checks": [f.as_json() for f in found]}


ROUTE_TYPES = {1: "unicast", 6: "blackhole", 7: "unreachable", 8: "prohibit"}


def routes(name: str, machine: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Each machine's main routing table as its agent sees it, with the protocol that installed each route."""
    from testbed import netns

    _, plan = lab.current_plan(name)
    names = [machine] if machine else [*(n.name for n in plan.nodes), *([plan.router.name] if plan.router else [])]
    known = {m.name for m in plan.machines()}
    obs = Observation(plan, wait=10)
    out: dict[str, list[dict[str, Any]]] = {}
    for m in names:
        if m not in known:
            raise NotFound(f"no machine {m} in lab {name} (machines: {', '.join(sorted(known))})")
        reply = obs.call(m, "status")
        if reply is None:
            raise EnvironmentProblem(f"{m} does not answer ({obs.failures.get(m, obs.state(m))}); `testbed status` "
                                     "says why")
        out[m] = [{**r, "protocol": netns.PROTO_NAMES.get(r.pop("proto"), "other"),
                   "type": ROUTE_TYPES.get(r["type"], str(r["type"]))} for r in reply.get("routes", [])
                  if r["type"] in ROUTE_TYPES]
    return out


def service_json(s: ServicePlan) -> dict[str, Any]:
    """One Service as planned: allocations and endpoints (endpoints follow pods and their readiness)."""
    return {"namespace": s.namespace, "name": s.name, "type": s.type, "clusterIPs": s.cluster_ips,
            "headless": s.headless, "externalName": s.external_name, "externalIPs": s.external_ips,
            "loadBalancerIPs": s.lb_ips,
            "ports": [{"name": p.name, "port": p.port, "protocol": p.protocol, "targetPort": p.target,
                       "nodePort": p.node_port} for p in s.ports],
            "endpoints": [{"ips": e.ips, "node": e.node, "pod": e.pod, "ready": e.ready, "ports": e.ports}
                          for e in s.endpoints],
            "sessionAffinity": "ClientIP" if s.affinity_timeout else "None",
            "externalTrafficPolicy": "Local" if s.external_local else "Cluster",
            "internalTrafficPolicy": "Local" if s.internal_local else "Cluster",
            "trafficDistribution": s.distribution, "selector": s.selector}


def services(plan: Plan) -> list[dict[str, Any]]:
    return [service_json(s) for s in plan.services]
