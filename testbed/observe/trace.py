"""`testbed trace`: one real packet followed through the kernels it crosses. Every machine of the lab marks the
flow's first packet for nftables tracing (its agent: agent/trace.py) while the source opens one connection from
a source port of its own; then each machine's trace, conntrack entries and routes are read and put in order,
hop by hop: the source's route, each node's netfilter (the Service that translated it and the endpoint it
chose, the NetworkPolicy that admitted or dropped it, NAT), the routing decision (the VXLAN, host-gw or BGP
route and its next hop), the next machine, and the destination pod; or the hop and the rule where it died.
Where the kernel's verdict disagrees with the NetworkPolicy model, it says so."""

from __future__ import annotations

import random
import time
from ipaddress import ip_address, ip_network
from typing import Any

from testbed.actions import each
from testbed.checks import Observation
from testbed.errors import NotFound
from testbed.observe.probe import address
from testbed.observe.tracelog import Names, Passage, interpret, parse
from testbed.plan.cluster import Plan, PodPlan
from testbed.policy.evaluate import decide
from testbed.runtime import podexec, probing

MAX_HOPS = 8
TRIES = 3  # traced connections when the source port cannot be had


def _addresses(plan: Plan) -> dict[str, str]:
    """Every address a machine answers for on the lab's links: address → machine."""
    out: dict[str, str] = {}
    for n in plan.nodes:
        for a in (n.underlay_ip, n.underlay_ip6, n.vtep4, n.vtep6, n.gateway4, n.gateway6):
            if a:
                out[a] = n.name
    if plan.router:
        for a in (plan.router.underlay_ip, plan.router.underlay_ip6, plan.router.external_ip,
                  plan.router.external_ip6):
            if a:
                out[a] = plan.router.name
    for h in plan.externals:
        for a in (h.ip, h.ip6):
            if a:
                out[a] = h.name
    return out


def _candidates(plan: Plan, host: str, port: int) -> list[str]:
    """Where the packet may end: the address dialled, and every endpoint when it is a Service's frontend."""
    out = [host]
    for svc in plan.services:
        frontends = svc.cluster_ips + svc.external_ips + svc.lb_ips
        ports = {p.port for p in svc.ports} | {p.node_port for p in svc.ports if p.node_port}
        if host in frontends or port in ports:
            out += [ip for e in svc.endpoints for ip in e.ips]
    return list(dict.fromkeys(out))


def _route(state: dict[str, Any] | None, address: str) -> dict[str, Any] | None:
    """The route of the machine's table that carries address (longest prefix), with its protocol."""
    best = None
    for r in (state or {}).get("routes", []):
        net = ip_network(r["dst"], strict=False)
        if net.version == ip_address(address).version and ip_address(address) in net and \
                (best is None or net.prefixlen > ip_network(best["dst"]).prefixlen):
            best = r
    return best


def _next_hop(plan: Plan, machine: str, passage: Passage, got: dict[str, Any], state: dict[str, Any] | None,
              owners: dict[str, str]) -> tuple[str | None, str]:
    """The machine the packet goes to next, and the routing decision that sends it there, in words."""
    daddr = passage.daddr or ""
    if daddr in owners and owners[daddr] == machine:
        return None, "for this machine itself"
    routed = got.get("routes", {}).get(daddr, {})
    if "error" in routed:
        return None, f"no route to {daddr}: {routed['error']}"
    dev, gateway = routed.get("dev"), routed.get("gateway")
    route = _route(state, daddr)
    from testbed import netns

    how = netns.PROTO_NAMES.get(route["proto"], "kernel") if route else "?"
    words = f"route {route['dst'] if route else daddr}" + (f" via {gateway}" if gateway else "") + f" dev {dev}" + \
        f" ({how})"
    if dev == "cni0" or (passage.oif or "").startswith(("veth", "cni0")):
        return None, words + " → the pod bridge"
    nxt = owners.get(gateway or "") or owners.get(daddr)
    if dev == "vxlan0" and gateway:
        node = next((n for n in plan.nodes if gateway in (n.vtep4, n.vtep6)), None)
        return (node.name if node else None), words + (f" → VXLAN to {node.name} ({node.underlay_ip}), VNI "
                                                       f"{plan.topology.networking.vxlan.vni}" if node else "")
    return nxt, words + (f" → {nxt}" if nxt else "")


def trace(plan: Plan, source: str, target: str, protocol: str = "tcp", timeout: float = 2.0) -> dict[str, Any]:
    host, port = address(plan, target)
    if not host.replace(".", "").isdigit() and ":" not in host:
        host = _resolve(plan, source, host)
    container, src_pod = podexec.resolve(plan, source)
    start_machine = src_pod.node if src_pod else next(m.name for m in plan.machines() if m.container == container)
    obs = Observation(plan)
    machines = [m.name for m in plan.machines() if obs.running(m.name)]
    states = obs.ask_all("inspect", machines)
    began = time.monotonic()
    for _ in range(TRIES):
        # above the kernel's ephemeral range (32768-60999), where no connection of the source's own can hold the
        # port: one in TIME_WAIT there made the bind fail, and the packet was never sent
        sport = random.randint(61000, 65535)
        result, got = _follow(plan, obs, machines, source, start_machine, host, port, protocol, timeout, sport)
        if result["result"] != "error" or "address" not in result.get("error", "").lower():
            break
    return _assemble(plan, source, src_pod, host, port, protocol, result, start_machine, got, states,
                     time.monotonic() - began)


def _follow(plan: Plan, obs: Observation, machines: list[str], source: str, start_machine: str, host: str,
            port: int, protocol: str, timeout: float, sport: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """One traced connection: what it met, and what each machine saw of it."""
    each(lambda m: obs.call(m, "trace_start", cache=False, protocol=protocol, sport=sport), machines)
    try:
        result = probing.connect(plan, source, host, port, protocol, timeout, sport)
    finally:  # each agent waits for its monitor to write the last lines: the machine the packet began on first,
        addresses = _candidates(plan, host, port)  # as long as its monitor takes (a loaded machine's writes
        # late), so that every other monitor has had that long too

        def stop(m: str) -> dict[str, Any]:
            return obs.call(m, "trace_stop", cache=False, protocol=protocol, sport=sport, addresses=addresses,
                            seen=m == start_machine)

        first = {start_machine: stop(start_machine)} if start_machine in machines else {}
        got = first | dict(zip(rest := [m for m in machines if m not in first], each(stop, rest), strict=True))
    return result, got


def _resolve(plan: Plan, source: str, name: str) -> str:
    container, pod = podexec.resolve(plan, source)
    got = podexec.running(container, pod).exec(podexec.wrap(pod, ["getent", "ahostsv4", name])).stdout.split()
    if not got:
        raise NotFound(f"{name} does not resolve from {source}")
    return got[0]


def _assemble(plan: Plan, source: str, src_pod: PodPlan | None, host: str, port: int, protocol: str,
              result: dict[str, Any], first: str, got: dict[str, Any], states: dict[str, Any],
              took: float) -> dict[str, Any]:
    names, owners = Names(plan), _addresses(plan)
    hops: list[dict[str, Any]] = []
    if src_pod:
        hops.append({"machine": f"pod {src_pod.key}", "steps": [
            {"kind": "route", "text": f"{src_pod.ipv4} → {host}:{port}/{protocol}: default via "
                                      f"{plan.node(src_pod.node).gateway4} dev eth0 (the pod's route)"}]})
    machine: str | None = first
    seen: set[str] = set()
    end, final = "lost", None
    while machine and machine not in seen and len(hops) < MAX_HOPS:
        seen.add(machine)
        answer = got.get(machine) or {}
        passage = interpret(parse(answer.get("lines", [])), names, protocol, answer.get("xt", {}))
        if not passage.steps and passage.daddr is None:
            hops.append({"machine": machine, "steps": [{"kind": "missing", "text": "the packet never arrived"}]})
            break
        steps = [{"kind": s.kind, "text": s.text, "rule": s.where} for s in passage.steps]
        hop = {"machine": machine, "in": passage.iif, "out": passage.oif, "daddr": passage.daddr, "steps": steps}
        hops.append(hop)
        final = passage
        if passage.fate in ("dropped", "rejected"):
            end = passage.fate
            break
        nxt, words = _next_hop(plan, machine, passage, answer, states.get(machine), owners)
        steps.append({"kind": "route", "text": words})
        if "no route" in words:
            end = "no route"
            break
        if nxt is None:
            end = "delivered"
            pod = names.pods.get(passage.daddr or "")
            if pod:
                steps.append({"kind": "deliver", "text": f"bridged to pod {pod.key} ({passage.daddr}:{passage.dport})"})
            break
        machine = nxt
    if end == "lost" and final is not None and result["result"] in ("timeout",):
        end = "no answer"
    return _verdict(plan, source, src_pod, host, port, protocol, result, hops, end, final, took)


def _verdict(plan: Plan, source: str, src_pod: PodPlan | None, host: str, port: int, protocol: str,
             result: dict[str, Any], hops: list[dict[str, Any]], end: str, final: Passage | None,
             took: float) -> dict[str, Any]:
    """The packet's fate in one line, and whether the NetworkPolicy model agrees."""
    reached = final.daddr if final else None
    dst = next((p for p in plan.pods if reached in (p.ipv4, p.ipv6)), None)
    model = None
    if src_pod and (dst or reached):
        verdict = decide(plan.policies, plan.namespaces, src_pod, src_pod.ipv4, dst, reached or host,
                         final.dport if final and final.dport else port, protocol.upper())
        drops = [s for h in hops for s in h["steps"] if s["kind"] == "drop" and "NetworkPolicy" in s["text"]]
        for step in drops:  # named: the policies that isolate that side
            side = verdict.egress if "egress" in step["text"] else verdict.ingress
            step["text"] += f" (selected by {', '.join(side.policies) or 'no policy, says the model'})"
        policy_drop = bool(drops)
        delivered = result["result"] == "connected"
        agrees = verdict.allowed != policy_drop if (policy_drop or delivered) else True
        model = {**verdict.as_json(), "agrees": agrees}
    last = hops[-1]["steps"][-1]["text"] if hops and hops[-1]["steps"] else end
    at = hops[-1]["machine"] if hops else source
    saw = f"; it saw the source as {result['client']}" if result.get("client") else ""
    answer = {"connected": f", which answered{saw}",
              "refused": ", which refused it: nothing listens there",
              "timeout": ", which did not answer in time"}.get(result["result"], f": {result.get('error', '')}")
    summary = {"delivered": f"delivered to {reached}:{final.dport if final else port}" +
                            (f" (pod {dst.key})" if dst else "") + answer,
               "dropped": f"dropped at {at}: {last}", "rejected": f"rejected at {at}: {last}",
               "no route": f"no route at {at}: {last}",
               "no answer": f"no answer: the packet left towards {reached or host} and nothing came back",
               "lost": f"the source could not send it: {result.get('error')}" if result["result"] == "error"
               else "the packet was not seen by any machine"}[end]
    return {"from": source, "to": host, "port": port, "protocol": protocol, "result": result["result"],
            "answeredBy": result.get("pod"), "sourceSeen": result.get("client"), "ms": result.get("ms"),
            "end": end, "summary": summary, "hops": hops, "model": model, "network": plan.topology.networking.network,
            "kubeProxy": plan.topology.kubeProxy.mode, "seconds": round(took, 2)}

