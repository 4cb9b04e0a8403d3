"""The lab's segments: Linux bridges in a lab-owned netns on the host, with a veth into each machine.

- `fabric`, the underlay: every node and the router (eth0 in each), 100.64.N.0/24 (and a ULA /64 with dual
  stack). The nodes' and router's addresses are planned.
- `external`, the segment behind the router: the router's ext0 and each external host's eth0.

Not Docker networks: on the host, Docker's isolation rules drop forwarded packets whose addresses are outside a
Docker network's subnet, which would drop pod IPs on the wire in routed modes. This namespace has no rules.
Nothing is left in the host's own namespace: deleting the lab netns deletes the bridges and every veth.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from testbed import netns
from testbed.actions import Change, Context
from testbed.agent import nsutil
from testbed.agent.macs import ip_mac
from testbed.checks import HEAL, Finding, Observation, fail, ok
from testbed.plan.cluster import Plan

if TYPE_CHECKING:
    from testbed.agent.iproute import IPRoute

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


def _ensure_bridge(fab: IPRoute, name: str, mtu: int) -> int:
    br = netns.one(fab, name)
    if br is None:
        fab.link("add", ifname=name, kind="bridge", mtu=mtu)
        br = netns.one(fab, name)
    fab.link("set", index=br, mtu=mtu, state="up")
    return br


def wire(ctx: Context, fab: IPRoute, bridge: str, ports: list[Port], mtu: int) -> Change:
    """Each port's veth exists (re-made if the machine was recreated), is on the bridge, up, with exactly its
    addresses. A recreated machine's link comes back with the same MAC, so its peers' ARP entries stay right."""
    change = Change()
    br = _ensure_bridge(fab, bridge, mtu)
    for port in ports:
        machine_ns = ctx.netns(port.machine)
        mac = ip_mac(port.addresses[0][0])
        with netns.ipr(machine_ns) as nd:
            if netns.one(nd, port.ifname) is None:
                stale = netns.one(fab, port.segment_if)
                if stale is not None:  # the machine was recreated: its old peer is gone
                    fab.link("del", index=stale)
                fd = os.open(machine_ns, os.O_RDONLY)
                try:
                    fab.link("add", ifname=port.segment_if, kind="veth", mtu=mtu,
                             peer={"ifname": port.ifname, "net_ns_fd": fd, "mtu": mtu, "address": mac})
                finally:
                    os.close(fd)
                change.added += 1
            fab.link("set", index=netns.one(fab, port.segment_if), master=br, state="up")
            idx = netns.one(nd, port.ifname)
            nd.link("set", index=1, state="up")
            netns.sync_addresses(nd, idx, port.addresses)
            nd.link("set", index=idx, mtu=mtu, address=mac, state="up")
    return change


def segment_ports(lab: str) -> dict[str, bool]:
    """The segments' ends of the machines' links, as they are in the lab's namespace: name → up."""
    path = os.path.join(netns.HOST_NETNS_DIR, ns_name(lab))
    if not os.path.exists(path):
        return {}
    with contextlib.suppress(OSError), netns.ipr(path) as fab:
        return {link.get_attr("IFLA_IFNAME"): bool(link["flags"] & 1) for link in fab.get_links()}
    return {}


def check_ports(obs: Observation, ports: list[Port], segment: str) -> list[Finding]:
    """Each machine's link to a segment: there, up, with its planned addresses, and its segment end up."""
    ends = segment_ports(obs.plan.lab)
    states = obs.ask_all("inspect", [p.machine for p in ports])
    out = []
    for port in ports:
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


def lab_netns(ctx: Context) -> str:
    path = netns.ensure_named(ns_name(ctx.lab))
    with netns.ipr(path) as fab:
        fab.link("set", index=1, state="up")
    return path


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
        with netns.ipr(lab_netns(ctx)) as fab:
            return wire(ctx, fab, BRIDGE, self.ports(ctx.plan), ctx.plan.topology.networking.mtu)

    def check(self, obs: Observation, deep: bool) -> list[Finding]:
        return check_ports(obs, self.ports(obs.plan), "underlay")


def remove(lab: str) -> bool:
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
