"""The external segment behind the router and its hosts: containers of the lab on documentation ranges
(203.0.113.0/24, 2001:db8::/64). A `dns` host runs Knot as the authoritative server of the zone (the cluster
DNS forwards there); a `web` host answers netexec-style on TCP 80 and UDP 5353, so a test sees the source
address a packet arrived with."""

from __future__ import annotations

from testbed import netns
from testbed.actions import Change, Context, each
from testbed.checks import HEAL, Finding, Observation, fail, ok
from testbed.network.underlay import (
    EXTERNAL_BRIDGE,
    NODE_IF,
    ROUTER_EXTERNAL_IF,
    Port,
    check_ports,
    fabric_if,
    wire,
)
from testbed.plan.cluster import Plan
from testbed.plan.machines import ExternalPlan
from testbed.runtime import agent

KNOT_DIR = "/run/testbed/knot"
WEB_PORTS = [{"port": 80, "protocol": "TCP"}, {"port": 5353, "protocol": "UDP"}]


def zone_file(plan: Plan) -> str:
    """The zone the dns host serves: the hosts by name, www (the first web host) with a CNAME and a TXT."""
    zone = plan.topology.external.zone
    dns = next((h for h in plan.externals if h.role == "dns"), None)
    web = next((h for h in plan.externals if h.role == "web"), None)
    lines = [f"$ORIGIN {zone}.", "$TTL 60",
             f"@ SOA ns1.{zone}. hostmaster.{zone}. 1 3600 600 86400 60", "@ NS ns1",
             '@ TXT "testbed external zone"']
    if dns:
        lines.append(f"ns1 A {dns.ip}")
    for h in plan.externals:
        lines.append(f"{h.name} A {h.ip}")
        if h.ip6:
            lines.append(f"{h.name} AAAA {h.ip6}")
    if web:
        lines.append(f"www A {web.ip}")
        if web.ip6:
            lines.append(f"www AAAA {web.ip6}")
        lines.append("web CNAME www")
    return "\n".join(lines) + "\n"


def knot_daemon(plan: Plan, host: ExternalPlan) -> dict[str, object]:
    zone = plan.topology.external.zone
    conf = f"{KNOT_DIR}/knot.conf"
    listen = ["0.0.0.0@53"] + (["::@53"] if host.ip6 else [])
    text = "\n".join([
        "server:", *[f"    listen: {addr}" for addr in listen], f"    rundir: {KNOT_DIR}",
        "control:", f"    listen: {KNOT_DIR}/knot.sock",
        "database:", f"    storage: {KNOT_DIR}/db",
        "log:", "  - target: stderr", "    any: info",
        "zone:", f"  - domain: {zone}", f"    storage: {KNOT_DIR}", f"    file: {zone}.zone",
        "    zonefile-sync: -1", ""])
    return {"name": "knotd", "argv": ["knotd", "-c", conf], "reload": ["knotc", "-c", conf, "reload"],
            "files": {conf: text, f"{KNOT_DIR}/{zone}.zone": zone_file(plan)}}


def _ports(plan: Plan) -> list[Port]:
    router, ext = plan.router, plan.topology.external
    if router is None:
        return []
    router_addrs = [(router.external_ip, ext.cidr.prefixlen)]
    if router.external_ip6:
        router_addrs.append((router.external_ip6, ext.cidrV6.prefixlen))
    ports = [Port(router.name, ROUTER_EXTERNAL_IF, fabric_if(router.name, "ex-"), router_addrs)]
    for h in plan.externals:
        addrs = [(h.ip, h.prefix)] + ([(h.ip6, h.prefix6 or 64)] if h.ip6 else [])
        ports.append(Port(h.name, NODE_IF, fabric_if(h.name, "ex-"), addrs))
    return ports


class External:
    name = "external"
    title = "Wiring the external segment"
    machines_only = True  # follows the topology alone: an apply of manifests skips it

    def check(self, obs: Observation, deep: bool) -> list[Finding]:
        """The segment's links, and each host's server: Knot running on a dns host."""
        out = check_ports(obs, _ports(obs.plan), "external segment")
        for h in obs.plan.externals:
            if h.role != "dns" or (reply := obs.call(h.name, "status")) is None:
                continue
            knot = next((d for d in reply.get("daemons", []) if d["name"] == "knotd"), None)
            out.append(ok("external DNS", h.name, f"knotd running on {h.name} ({h.ip})")
                       if knot and knot["state"] == "running" else
                       fail("external DNS", h.name, f"knotd on {h.name} is {knot['state'] if knot else 'missing'}",
                            hint=f"`testbed logs {h.name}/knotd`; {HEAL}"))
        return out

    def run(self, ctx: Context) -> Change:
        plan = ctx.plan
        if plan.router is None:
            return Change()
        change = wire(ctx, EXTERNAL_BRIDGE, _ports(plan), plan.topology.networking.mtu)

        def one(h: ExternalPlan) -> Change:
            defaults: dict[str, dict[str, object]] = {"0.0.0.0/0": {"gateway": h.gateway}}
            if h.gateway6:
                defaults["::/0"] = {"gateway": h.gateway6}
            ctx.netops(h.name, "routes", proto=netns.PROTO_DEFAULT, wanted=defaults)
            run_dir = ctx.run_dir(h.name)
            daemons = [knot_daemon(plan, h)] if h.role == "dns" else []
            done = Change(**agent.call(run_dir, "daemons", procs=daemons))
            if h.role == "web":
                agent.call(run_dir, "serve", name=h.name, ports=WEB_PORTS, dual=bool(h.ip6))
            return done

        for done in each(one, plan.externals):
            change += done
        return change
