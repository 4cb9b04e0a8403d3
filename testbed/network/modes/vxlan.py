"""The VXLAN overlay, Flannel style: one device per node, no multicast and no learning; every entry is static.

For each other node B, node A gets: an FDB entry (B's VTEP MAC → B's underlay IP), a permanent neighbour
(B's VTEP address → B's VTEP MAC) and a route (B's pod range via B's VTEP address, onlink). The MACs are
derived from the lab and node names, so all of it is planned before anything exists.
"""

from __future__ import annotations

from typing import Any

from testbed.actions import Change, Context, each
from testbed.checks import HEAL, Finding, Observation, fail, ok
from testbed.network.registry import NetworkMode, register
from testbed.network.underlay import NODE_IF
from testbed.plan.cluster import NodePlan

DEVICE = "vxlan0"


def _peer(peer: NodePlan) -> dict[str, Any]:
    routes = [[peer.vtep4, peer.cidr4]] + ([[peer.vtep6, peer.cidr6]] if peer.vtep6 and peer.cidr6 else [])
    return {"mac": peer.vtep_mac, "underlay": peer.underlay_ip, "routes": routes}


def _lacking(state: dict, node: NodePlan, peers: list[NodePlan], vni: int, port: int) -> list[str]:
    link = next((x for x in state["links"] if x["name"] == DEVICE), None)
    if link is None:
        return [f"{DEVICE} is missing"]
    out = [] if link["up"] else [f"{DEVICE} is down"]
    if link.get("vxlan") != {"id": vni, "port": port, "local": node.underlay_ip}:
        out.append(f"{DEVICE} has {link.get('vxlan')}, not VNI {vni} port {port} local {node.underlay_ip}")
    fdb = {(f["mac"], f["dst"]) for f in state["fdb"] if f["dev"] == DEVICE}
    neigh = {(n["dst"], n["mac"]) for n in state["neighbours"] if n["dev"] == DEVICE}
    routes = {(r["dst"], r["gateway"]) for r in state["routes"] if r["dev"] == DEVICE}
    for peer in peers:
        if (peer.vtep_mac, peer.underlay_ip) not in fdb:
            out.append(f"no FDB entry {peer.vtep_mac} → {peer.underlay_ip} ({peer.name})")
        for gw, cidr in [(peer.vtep4, peer.cidr4)] + ([(peer.vtep6, peer.cidr6)] if peer.vtep6 else []):
            if (gw, peer.vtep_mac) not in neigh:
                out.append(f"no neighbour {gw} → {peer.vtep_mac} ({peer.name})")
            if (cidr, gw) not in routes:
                out.append(f"no route to {cidr} via {gw} dev {DEVICE} ({peer.name}'s pods)")
    return out


@register
class Vxlan(NetworkMode):
    name = "vxlan"
    overhead = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8
    device = DEVICE
    title = "VXLAN overlay"

    def install(self, ctx: Context) -> Change:
        """Each node's agent makes its device and its peers' entries (agent/netops.vxlan), all nodes at once."""
        net, plan = ctx.plan.topology.networking, ctx.plan
        peers = {n.name: _peer(n) for n in plan.nodes}

        def one(node: NodePlan) -> None:
            ctx.netops(node.name, "vxlan", name=DEVICE, vni=net.vxlan.vni, port=net.vxlan.port,
                       local=node.underlay_ip, uplink=NODE_IF, mtu=plan.pod_mtu, mac=node.vtep_mac,
                       addresses=[[node.vtep4, 32]] + ([[node.vtep6, 128]] if node.vtep6 else []),
                       peers=[peers[p.name] for p in plan.nodes if p.name != node.name])

        each(one, plan.nodes)
        return Change(changed=len(plan.nodes))

    def check(self, obs: Observation, deep: bool) -> list[Finding]:
        """On every node: vxlan0 as planned (VNI, port, local address, up), and for every peer its FDB entry,
        its permanent neighbour and its route, as the kernel holds them."""
        plan, net = obs.plan, obs.plan.topology.networking
        states = obs.ask_all("inspect", [n.name for n in plan.nodes])
        out = []
        for node in plan.nodes:
            state = states[node.name]
            if state is None:
                continue
            lacking = _lacking(state, node, [p for p in plan.nodes if p is not node], net.vxlan.vni,
                               net.vxlan.port)
            out.append(fail("vxlan", node.name, f"{node.name}: {lacking[0]}", lacking, HEAL) if lacking else
                       ok("vxlan", node.name, f"{node.name}: {DEVICE} VNI {net.vxlan.vni} up, "
                                              f"{len(plan.nodes) - 1} peer(s) with FDB, neighbour and route"))
        return out

    def uninstall(self, ctx: Context) -> Change:
        """The device takes its FDB, neighbours and routes with it."""
        return Change(removed=sum(each(lambda n: ctx.netops(n.name, "drop_link", name=DEVICE), ctx.plan.nodes)))
