"""bgp, Calico style: no encapsulation. Every node runs BIRD and peers with the router (iBGP with the router as
route reflector, or eBGP with one ASN per node), announcing its pod range and the /32 (/128) of every pod that
lives on it from another node's range (a moved pod). Learned routes go into the kernel; nothing else does.

A pod that moved keeps its IP: on its new node it is a routed pod (a /32 on its eth0, default route onlink
through the node's bridge, a host route to it on the node), and the node it left answers ARP and NDP on its
bridge for that address (proxy ARP, proxy NDP entries), so pods still there reach it through the router's
routes. The longest prefix wins everywhere, so no range has to be split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tenacity import (
    Retrying,
    retry,
    retry_if_exception_type,
    retry_if_result,
    stop_after_delay,
    wait_exponential,
    wait_fixed,
)

from testbed.actions import Change, Context, each
from testbed.checks import HEAL, Finding, Observation, fail, ok
from testbed.errors import TestbedError
from testbed.network import bird
from testbed.network.bridge import BRIDGE
from testbed.network.registry import NetworkMode, register
from testbed.plan import services
from testbed.plan.cluster import NodePlan, Plan
from testbed.plan.machines import RouterPlan
from testbed.runtime import agent

BIRD_DIR = "/run/testbed/bird"
BIRD_CONF = f"{BIRD_DIR}/bird.conf"
BIRD_CTL = "/run/testbed/bird.ctl"  # in the machine's run folder, which the host sees too
PROTO_BIRD = 12


def _timers(plan: Plan) -> str:
    bgp = plan.topology.networking.bgp
    # every speaker sits on the fabric: single-hop sessions, next hops taken as directly connected (iBGP would
    # otherwise resolve them recursively through an IGP table the lab does not have)
    return (f"direct; hold time {bgp.holdTime}; keepalive time {bgp.keepalive}; connect delay time 0; "
            "connect retry time 1; error wait time 1, 5;")


def _kernel(dual: bool) -> list[str]:
    out = ["protocol device { scan time 5; }",
           "protocol kernel kernel4 { merge paths on; ipv4 { import none; export where source = RTS_BGP; }; }"]
    if dual:
        out.append("protocol kernel kernel6 { merge paths on; ipv6 { import none; export where source = "
                   "RTS_BGP; }; }")
    return out


def announced(plan: Plan, node: NodePlan) -> tuple[list[str], list[str]]:
    """What a node announces: its range, and the pods living on it from other ranges (v4, v6)."""
    v4, v6 = [node.cidr4], [node.cidr6] if node.cidr6 else []
    for pod in plan.pods_on(node.name):
        if pod.routed:
            v4.append(f"{pod.ipv4}/32")
            if pod.ipv6:
                v6.append(f"{pod.ipv6}/128")
    for prefix in services.announced_lb(plan.services, node.name):
        (v6 if ":" in prefix else v4).append(prefix)
    return v4, v6


def node_config(plan: Plan, node: NodePlan) -> str:
    """BIRD's configuration for a node (pure): announcements as static blackholes that never reach the kernel
    (the kernel protocols export only what BGP learned)."""
    router = plan.router
    assert router is not None
    v4, v6 = announced(plan, node)
    lines = [f"router id {node.underlay_ip};", "log stderr all;", *_kernel(bool(node.cidr6)),
             "protocol static pods4 { ipv4; " + " ".join(f"route {p} blackhole;" for p in v4) + " }"]
    lines.append(f"protocol bgp router4 {{ local {node.underlay_ip} as {node.asn}; neighbor {router.underlay_ip} "
                 f"as {router.asn}; {_timers(plan)} ipv4 {{ gateway direct; import all; export where "
                 "proto = \"pods4\"; next hop self; }; }")
    if v6 and node.underlay_ip6 and router.underlay_ip6:
        lines.append("protocol static pods6 { ipv6; " + " ".join(f"route {p} blackhole;" for p in v6) + " }")
        lines.append(f"protocol bgp router6 {{ local {node.underlay_ip6} as {node.asn}; neighbor "
                     f"{router.underlay_ip6} as {router.asn}; {_timers(plan)} ipv6 {{ gateway direct; import all; "
                     "export where proto = \"pods6\"; next hop self; }; }")
    return "\n".join(lines) + "\n"


def router_config(plan: Plan, router: RouterPlan) -> str:
    """The router's BIRD: one session per node and family; a route reflector with ibgp."""
    ibgp = plan.topology.networking.bgp.peering == "ibgp"
    lines = [f"router id {router.underlay_ip};", "log stderr all;", *_kernel(bool(router.underlay_ip6))]
    for node in plan.nodes:
        rr = " rr client;" if ibgp else ""
        rr += " passive on;"
        lines.append(f"protocol bgp {_proto(node.name)}_4 {{ local {router.underlay_ip} as {router.asn}; "
                     f"neighbor {node.underlay_ip} as {node.asn};{rr} {_timers(plan)} "
                     "ipv4 { gateway direct; import all; export all; }; }")
        if node.underlay_ip6 and router.underlay_ip6:
            lines.append(f"protocol bgp {_proto(node.name)}_6 {{ local {router.underlay_ip6} as {router.asn}; "
                         f"neighbor {node.underlay_ip6} as {node.asn};{rr} {_timers(plan)} "
                         "ipv6 { gateway direct; import all; export all; }; }")
    return "\n".join(lines) + "\n"


def _proto(node: str) -> str:
    return "n_" + node.replace("-", "_")


def bird_daemon(config: str) -> dict[str, Any]:
    return {"name": "bird", "argv": ["bird", "-f", "-c", BIRD_CONF, "-s", BIRD_CTL],
            "reload": ["birdc", "-s", BIRD_CTL, "configure"], "files": {BIRD_CONF: config}}


def expected_routes(plan: Plan, node: NodePlan) -> set[str]:
    """What BGP must have put in a node's kernel: every other node's announcements that it does not make
    itself (a LoadBalancer IP that several nodes announce stays theirs: a node prefers its own)."""
    out: set[str] = set()
    for peer in plan.nodes:
        if peer is not node:
            v4, v6 = announced(plan, peer)
            out |= set(v4) | set(v6)
    mine_v4, mine_v6 = announced(plan, node)
    return out - set(mine_v4) - set(mine_v6)


@retry(retry=retry_if_result(lambda missing: bool(missing)), stop=stop_after_delay(30),
       wait=wait_exponential(multiplier=0.01, max=0.2), retry_error_callback=lambda state: state.outcome.result())
def _missing_routes(ctx: Context) -> dict[str, set[str]]:
    plan = ctx.plan
    wanted = {node.name: expected_routes(plan, node) for node in plan.nodes}
    if plan.router is not None:  # the outside world's way in: the router's kernel holds every announcement
        wanted[plan.router.name] = {prefix for node in plan.nodes for family in announced(plan, node)
                                    for prefix in family}
    missing: dict[str, set[str]] = {}
    for machine, routes in wanted.items():
        have = set(ctx.netops(machine, "learnt", proto=PROTO_BIRD))
        if lacking := routes - have:
            missing[machine] = lacking
    return missing


def _wait_converged(ctx: Context) -> None:
    """`up` returns once every node has learnt every other node's routes, and the router all of them, so traffic
    works right away, from the outside world too."""
    missing = _missing_routes(ctx)
    if missing:
        raise TestbedError("BGP did not converge within 30 s; missing routes: " + "; ".join(
            f"{node}: {', '.join(sorted(routes))}" for node, routes in sorted(missing.items())) +
            " (see `testbed status` and `testbed exec router -- birdc -s /run/testbed/bird.ctl show protocols`)")


def proxied(plan: Plan, node: NodePlan) -> set[str]:
    """IPv6 addresses of this node's range whose pods live elsewhere: answered here by proxy NDP."""
    return {p.ipv6 for p in plan.pods if p.routed and p.ipv6 and p.node != node.name
            and plan.home(p.ipv4) is node}


def _speakers(plan: Plan) -> object:
    """What the mode gives the machines: each BIRD's configuration, each bridge's proxied addresses."""
    assert plan.router is not None
    return (router_config(plan, plan.router),
            [(n.name, node_config(plan, n), sorted(proxied(plan, n)), n.cidr6) for n in plan.nodes])


def _bridge_proxies(ctx: Context, node: NodePlan, on: bool) -> None:
    """Proxy ARP on the bridge (the kernel answers for addresses routed elsewhere) and proxy NDP entries."""
    ctx.netops(node.name, "proxies", bridge=BRIDGE, on=on, ndp=bool(node.cidr6),
               wanted=sorted(proxied(ctx.plan, node)) if on else [])


@register
class Bgp(NetworkMode):
    name = "bgp"
    keeps_ip_on_move = True
    follows_objects = True  # it announces moved pods and LoadBalancer IPs
    title = "BGP (BIRD on every node, the router as peer)"

    def router_learns(self, plan: Plan) -> bool:
        return True

    def install(self, ctx: Context) -> Change:
        plan = ctx.plan
        assert plan.router is not None
        if ctx.unchanged(_speakers):
            return Change()  # every BIRD runs this configuration, every bridge proxies these: nothing is sent
        for node in plan.nodes:
            _bridge_proxies(ctx, node, True)
        # the router first, passive: it is listening when the nodes' first connection comes, which spares them
        # a failed attempt and the connect-retry wait after it
        change = self._daemons(ctx, {plan.router.name: [bird_daemon(router_config(plan, plan.router))]})
        change += self._daemons(ctx, {n.name: [bird_daemon(node_config(plan, n))] for n in plan.nodes})
        return change + (self._heal(ctx) if ctx.verify else Change())

    @staticmethod
    def _heal(ctx: Context) -> Change:
        """`up`: a BIRD that does not answer on its control socket (stopped, hung) is restarted by its agent;
        one that died was restarted already."""
        # a BIRD started a moment ago (a fresh `up`) has not made its control socket yet, or does not accept on it
        # yet: waited for, not taken for a hung one and restarted
        starting = retry_if_exception_type((FileNotFoundError, ConnectionRefusedError))

        def one(machine: str) -> bool:
            try:
                for attempt in Retrying(retry=starting, stop=stop_after_delay(3), wait=wait_fixed(0.05), reraise=True):
                    with attempt:
                        bird.query(ctx.run_dir(machine) / bird.CTL, "show status", timeout=1)
                return False
            except OSError:
                ctx.say(f"BIRD on {machine} does not answer: restarting it")
                return bool(agent.call(ctx.run_dir(machine), "restart", name="bird")["restarted"])

        machines = [*([ctx.plan.router.name] if ctx.plan.router else []), *(n.name for n in ctx.plan.nodes)]
        return Change(changed=sum(each(one, machines)))

    def settle(self, ctx: Context) -> None:
        _wait_converged(ctx)

    def status(self, plan: Plan, run_dir: Path) -> dict[str, Any]:
        """Each speaker's sessions, and what each node's BIRD really exports to the router."""
        nodes = {n.name for n in plan.nodes}

        def one(machine: str) -> dict[str, Any]:
            # BIRD answers its socket within milliseconds; a stopped or hung one never does, and must not hold
            # up `status` (or `graph`, `diagnose`) for the others
            ctl = run_dir / machine / bird.CTL
            found = bird.answered(ctl, timeout=1.0)
            out: dict[str, Any] = {"sessions": found or []}
            if machine in nodes:
                out["announces"] = (bird.exported(ctl, ["router4", "router6"], timeout=1.0) if found is not None
                                    else None) or []
            return out

        machines = [*([plan.router.name] if plan.router else []), *(n.name for n in plan.nodes)]
        return dict(zip(machines, each(one, machines), strict=True))

    def check(self, obs: Observation, deep: bool) -> list[Finding]:
        """Every speaker's BIRD runs with its sessions established; each node exports what the plan announces,
        and holds in its kernel what the others announce; the router holds every node's announcements."""
        plan = obs.plan
        machines = [*([plan.router] if plan.router else []), *plan.nodes]
        states = obs.ask_all("inspect", [m.name for m in machines])
        statuses = obs.ask_all("status", [m.name for m in machines])

        def one(m: NodePlan | RouterPlan) -> Finding | None:
            if states[m.name] is None:
                return None
            daemon = next((d for d in statuses[m.name]["daemons"] if d["name"] == "bird"), None) \
                if statuses[m.name] else None
            if daemon is None or daemon["state"] != "running":
                return fail("bgp", m.name, f"BIRD on {m.name} is {daemon['state'] if daemon else 'missing'}",
                            hint=f"`testbed logs {m.name}/bird`; its agent restarts it, {HEAL}")
            lacking = self._lacking(obs, m, states[m.name])
            return fail("bgp", m.name, f"{m.name}: {lacking[0]}", lacking, HEAL) if lacking else \
                ok("bgp", m.name, f"{m.name}: sessions established, routes exchanged")

        return [f for f in each(one, machines) if f is not None]

    @staticmethod
    def _lacking(obs: Observation, m: NodePlan | RouterPlan, state: dict[str, Any]) -> list[str]:
        plan, ctl = obs.plan, obs.machine_dir(m.name) / bird.CTL
        found = bird.answered(ctl, timeout=1.0)  # within milliseconds when it runs
        if found is None:
            return ["BIRD runs but does not answer its control socket within 1 s (stopped or hung)"]
        out = [f"session {s['name']} is {s['info']}" for s in found if s["info"] != "Established"]
        learnt = {r["dst"] for r in state["routes"] if r["proto"] == PROTO_BIRD}
        if isinstance(m, NodePlan):
            v4, v6 = announced(plan, m)
            exports = bird.exported(ctl, ["router4", "router6"], timeout=1.0) or []
            out += [f"BIRD does not export {p}" for p in v4 + v6 if p not in exports]
            out += [f"BIRD exports {p}, which the plan does not announce" for p in exports if p not in v4 + v6]
            want = expected_routes(plan, m)
        else:
            want = {p for n in plan.nodes for family in announced(plan, n) for p in family}
        out += [f"no route to {p} learnt by BGP in the kernel" for p in sorted(want - learnt)]
        return out

    def uninstall(self, ctx: Context) -> Change:
        machines = [*ctx.plan.nodes, *([ctx.plan.router] if ctx.plan.router else [])]
        each(lambda node: _bridge_proxies(ctx, node, False), ctx.plan.nodes)
        return self._daemons(ctx, {m.name: [] for m in machines})

    @staticmethod
    def _daemons(ctx: Context, wanted: dict[str, list[dict[str, Any]]]) -> Change:
        def one(item: tuple[str, list[dict[str, Any]]]) -> Change:
            return Change(**agent.call(ctx.run_dir(item[0]), "daemons", procs=item[1]))

        return sum(each(one, wanted.items()), Change())
