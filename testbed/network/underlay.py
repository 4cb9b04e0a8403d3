"""The lab's segments: Linux bridges in the lab's fabric machine (a container of its own), with a veth into each
machine.

- `fabric`, the underlay: every node and the router (eth0 in each), 100.64.N.0/24 (and a ULA /64 with dual
  stack). The nodes' and router's addresses are planned.
- `external`, the segment behind the router: the router's ext0 and each external host's eth0.

Not Docker networks: on the host, Docker's isolation rules drop forwarded packets whose addresses are outside a
Docker network's subnet, which would drop pod IPs on the wire in routed modes. The fabric's namespace has no
rules. The fabric's agent does the wiring (agent/fabric.py), so the command line makes nothing on the host, and
nothing is left in the host's namespaces: removing the fabric's container removes the bridges and every veth.
Labs made before the fabric machine held their bridges in a named netns on the host (`testbed-<lab>`); `up` and
`down` remove it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from typing import Any

from testbed import netns
from testbed.actions import Change, Context, each
from testbed.agent import nsutil
from testbed.agent.macs import ip_mac
from testbed.checks import HEAL, Finding, Observation, fail, ok
from testbed.plan.cluster import Plan
from testbed.plan.machines import FabricPlan
from testbed.runtime import agent

BRIDGE = "fabric"
EXTERNAL_BRIDGE = "external"
NODE_IF = "eth0"
ROUTER_EXTERNAL_IF = "ext0"
NETNS_PREFIX = "testbed-"


def ns_name(lab: str) -> str:
    return NETNS_PREFIX + lab


def fabric_if(machine: str, prefix: str = "ul-") -> str:
    """The segment's end of a machine's link: named after the machine, within the 15-byte limit."""
    name = f"{prefix}{machine}"
    return name if len(name) <= 15 else prefix + hashlib.sha1(machine.encode()).hexdigest()[:15 - len(prefix)]


@dataclass
class Port:
    """One machine's link to a segment."""

    machine: str
    ifname: str  # inside the machine
    segment_if: str  # on the bridge's side
    addresses: list[tuple[str, int]]  # (address, prefix length)


STITCH = "stitch"  # the fabric bridge's port to the other hosts' fabrics


def stitch_vni(lab: str) -> int:
    """One VNI per lab, from its name: two labs stitched over the same hosts stay apart."""
    return int(hashlib.sha1(lab.encode()).hexdigest()[:6], 16) % 16777214 + 1


def stitching(plan: Plan, host: str) -> dict[str, Any] | None:
    """The host's fabric's VXLAN to every other host's, when the lab spans hosts."""
    hosts = plan.topology.hosts
    if len(hosts) < 2:
        return None
    me = next(h for h in hosts if h.name == host)
    return {"name": STITCH, "vni": stitch_vni(plan.lab), "port": plan.topology.stitch.port, "local": str(me.address),
            "peers": [str(h.address) for h in hosts if h.name != host]}


def wire(ctx: Context, bridge: str, ports: list[Port], mtu: int, stitched: bool = False) -> Change:
    """Each port's veth exists (re-made if the machine was recreated), is on the bridge, up, with exactly its
    addresses, as the fabric's agent of the machine's host makes it; with stitched, the hosts' bridges are joined.
    A recreated machine's link comes back with the same MAC, so its peers' ARP entries stay right."""
    plan = ctx.plan
    pids = dict(zip([p.machine for p in ports], each(lambda p: ctx.pid(p.machine), ports), strict=True))

    def one(fabric: FabricPlan) -> int:
        mine = [p for p in ports if plan.machine(p.machine).host == fabric.host]
        stitch = stitching(plan, fabric.host) if stitched else None
        if not mine and stitch is None:
            return 0
        wanted = [{"machine": p.machine, "pid": pids[p.machine], "ifname": p.ifname, "segment_if": p.segment_if,
                   "addresses": p.addresses, "mac": ip_mac(p.addresses[0][0])} for p in mine]
        return int(agent.call(ctx.run_dir(fabric.name), "wire", bridge=bridge, mtu=mtu, ports=wanted,
                              stitch=stitch)["added"])

    return Change(added=sum(each(one, plan.fabrics)))


def segment_ports(links: list[dict[str, Any]] | None) -> dict[str, bool]:
    """The segments' ends of the machines' links, as the fabric's agent reports its links: name → up."""
    return {link["name"]: bool(link["up"]) for link in links or []}


def check_ports(obs: Observation, ports: list[Port], segment: str) -> list[Finding]:
    """Each machine's link to a segment: there, up, with its planned addresses, and its segment end up."""
    fabrics = {f.host: f.name for f in obs.plan.fabrics}
    states = obs.ask_all("inspect", [p.machine for p in ports] + list(fabrics.values()))
    ends_of = {host: segment_ports((states[name] or {}).get("links")) for host, name in fabrics.items()}
    out = []
    for port in ports:
        ends = ends_of[obs.plan.machine(port.machine).host]
        state = states[port.machine]
        if state is None:
            continue  # the machine's own check says why
        where = f"{port.machine}:{port.ifname}"
        link = next((x for x in state["links"] if x["name"] == port.ifname), None)
        have = {(a["address"], a["prefix"]) for a in state["addresses"] if a["dev"] == port.ifname}
        lacking = [f"{a}/{p}" for a, p in port.addresses if (a, p) not in have]
        if link is None:
            out.append(fail(segment, port.machine, f"{where} is missing", hint=HEAL))
        elif not link["up"]:
            out.append(fail(segment, port.machine, f"{where} is down", [f"ip link show {port.ifname}: state DOWN"],
                            hint=HEAL))
        elif lacking:
            out.append(fail(segment, port.machine, f"{where} lacks its address(es) {', '.join(lacking)}", hint=HEAL))
        elif not ends.get(port.segment_if):
            out.append(fail(segment, port.machine, f"the {segment}'s end of {where} ({port.segment_if}) is "
                                                   f"{'down' if port.segment_if in ends else 'missing'}", hint=HEAL))
        else:
            out.append(ok(segment, port.machine, f"{where} up with {', '.join(f'{a}/{p}' for a, p in port.addresses)}"))
    return out


class Underlay:
    name = "underlay"
    title = "Wiring the underlay"
    machines_only = True  # follows the topology alone: an apply of manifests skips it

    @staticmethod
    def ports(plan: Plan) -> list[Port]:
        v4, v6 = plan.underlay.prefixlen, plan.underlay6.prefixlen if plan.underlay6 else 0
        machines = [*plan.nodes, *([plan.router] if plan.router else [])]
        ports = []
        for m in machines:
            addresses = [(m.underlay_ip, v4)] + ([(m.underlay_ip6, v6)] if m.underlay_ip6 else [])
            ports.append(Port(m.name, NODE_IF, fabric_if(m.name), addresses))
        return ports

    def run(self, ctx: Context) -> Change:
        remove(ctx.lab)  # a lab made before the fabric machine: its machines' links then are re-made
        return wire(ctx, BRIDGE, self.ports(ctx.plan), ctx.plan.underlay_mtu, stitched=True)

    def check(self, obs: Observation, deep: bool) -> list[Finding]:
        return check_ports(obs, self.ports(obs.plan), "underlay")


def remove(lab: str) -> bool:
    """The lab's named netns on the host, as testbed made it before the fabric machine; whether there was one."""
    path = os.path.join(netns.HOST_NETNS_DIR, ns_name(lab))
    if not os.path.exists(path):
        return False
    with contextlib.suppress(OSError):
        nsutil.remove_named(path)
    return True


def lab_names() -> set[str]:
    if not os.path.isdir(netns.HOST_NETNS_DIR):
        return set()
    return {n[len(NETNS_PREFIX):] for n in os.listdir(netns.HOST_NETNS_DIR) if n.startswith(NETNS_PREFIX)}
