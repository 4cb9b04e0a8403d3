"""`testbed describe`: one object and everything that touches it, as `kubectl describe` shows it, from the plan
and what the machines say now. A pod: its addresses, node, ports, labels, readiness and restarts, the Services
that send to it, the NetworkPolicies that select it, its recent events. A Service: its selector, ports,
addresses, endpoints with their readiness, and whether every node holds its rules. A NetworkPolicy: the pods
it selects and each rule's peers, resolved to pods and CIDRs. A node: its pods, routes, BGP sessions, agent."""

from __future__ import annotations

from typing import Any

from testbed import events, lab
from testbed.agent.version import code_version
from testbed.checks import Observation
from testbed.errors import NotFound
from testbed.installers import installers
from testbed.network.registry import mode
from testbed.observe.status import collect, service_json
from testbed.plan.cluster import Plan
from testbed.policy.evaluate import ip_block, peer_pods, selects

RECENT = 10


def _recent(name: str, *needles: str) -> list[dict[str, Any]]:
    return [e for e in events.read(name) if any(n in e.get("object", "") or n in e.get("message", "")
                                                for n in needles)][-RECENT:]


def _pod(name: str, plan: Plan, key: str) -> dict[str, Any]:
    pod = next((p for p in plan.pods if p.key == key), None)
    if pod is None:
        raise NotFound(f"no pod {key} in lab {name} (pods: {', '.join(p.key for p in plan.pods[:12])}...)")
    row = next(p for p in collect(name)["pods"] if f"{p['namespace']}/{p['name']}" == key)
    services = [f"{s.key}:{p.name or p.port}" for s in plan.services for e in s.endpoints if e.pod == key
                for p in s.ports if p.key in e.ports]
    policies = {d: [pol.key for pol in plan.policies if selects(pol, pod, d)] for d in ("ingress", "egress")}
    return {"kind": "Pod", "name": key, "node": pod.node, "ips": row["ips"], "ports": row["ports"],
            "labels": pod.labels, "ready": row["ready"], "restarts": row["restarts"], "processes": row["processes"],
            "services": services, "policies": policies, "events": _recent(name, f"pod/{key}", key)}


def _service(name: str, plan: Plan, key: str) -> dict[str, Any]:
    svc = next((s for s in plan.services if s.key == key), None)
    if svc is None:
        raise NotFound(f"no Service {key} in lab {name} (Services: {', '.join(s.key for s in plan.services)})")
    obs = Observation(plan)
    proxy = next(s for s in installers() if s.name == "kube-proxy").check(obs, deep=True)
    nodes = {f.subject: f.status == "ok" for f in proxy if f.check == "kube-proxy rules"}
    return {"kind": "Service", **service_json(svc), "programmed": nodes, "events": _recent(name, key)}


def _policy(name: str, plan: Plan, key: str) -> dict[str, Any]:
    pol = next((p for p in plan.policies if p.key == key), None)
    if pol is None:
        raise NotFound(f"no NetworkPolicy {key} in lab {name} (policies: "
                       f"{', '.join(p.key for p in plan.policies) or 'none'})")
    rules = []
    for direction in ("ingress", "egress"):
        for i, rule in enumerate(pol.spec.ingress if direction == "ingress" else pol.spec.egress):
            peers = rule.from_ if direction == "ingress" else rule.to
            pods = sorted({p.key for peer in peers if peer.ipBlock is None
                           for p in peer_pods(peer, pol.namespace, plan.pods, plan.namespaces)})
            cidrs = [str(n) for peer in peers if peer.ipBlock is not None for n in ip_block(peer)]
            rules.append({"direction": direction, "index": i + 1, "anyPeer": not peers, "pods": pods, "cidrs": cidrs,
                          "ports": [f"{p.port or 'any'}{'-' + str(p.endPort) if p.endPort else ''}/{p.protocol}"
                                    for p in rule.ports] or ["any"]})
    return {"kind": "NetworkPolicy", "name": key, "policyTypes": pol.spec.types,
            "selects": {d: [p.key for p in plan.pods if selects(pol, p, d)] for d in ("ingress", "egress")},
            "rules": rules, "events": _recent(name, key)}


def _node(name: str, plan: Plan, node: str) -> dict[str, Any]:
    if node not in {n.name for n in plan.nodes}:
        raise NotFound(f"no node {node} in lab {name} (nodes: {', '.join(n.name for n in plan.nodes)})")
    n = plan.node(node)
    obs = Observation(plan)
    ping, state = obs.call(node, "ping"), obs.call(node, "status")
    extra = mode(plan.topology.networking.network).status(plan, obs.run_dir).get(node, {})
    return {"kind": "Node", "name": node, "container": n.container, "state": obs.state(node),
            "underlayIP": n.underlay_ip, "podCIDRs": [c for c in (n.cidr4, n.cidr6) if c], "labels": n.labels,
            "agent": "not answering" if ping is None else "outdated" if ping["version"] != code_version()
            else "answering", "agentRssKiB": (state or {}).get("rss_kib"),
            "agentRequests": (state or {}).get("received", {}),
            "pods": [p.key for p in plan.pods_on(node)], "routes": (state or {}).get("routes", []),
            "bgp": extra, "events": _recent(name, f"node/{node}")}


def describe(name: str, ref: str) -> dict[str, Any]:
    """ref: NS/POD (or POD), svc/NS/NAME, netpol/NS/NAME, node/NAME."""
    kind, _, rest = ref.partition("/")
    if kind in ("svc", "service"):
        return lab.read_synced(name, lambda plan: _service(name, plan, rest if "/" in rest else f"default/{rest}"),
                               lambda found: not all(found["programmed"].values()))
    _, plan = lab.synced_plan(name)
    if kind in ("netpol", "networkpolicy"):
        return _policy(name, plan, rest if "/" in rest else f"default/{rest}")
    if kind == "node":
        return _node(name, plan, rest)
    return _pod(name, plan, ref if "/" in ref else f"default/{ref}")
