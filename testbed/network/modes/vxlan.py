"""The VXLAN overlay, Flannel style: one device per node, no multicast and no learning; every entry is static.

For each other node B, node A gets: an FDB entry (B's VTEP MAC → B's underlay IP), a permanent neighbour
(B's VTEP address → B's VTEP MAC) and a route (B's pod range via B's VTEP address, onlink). The MACs are
derived from the lab and node names, so all of it is planned before anything exists.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

from testbed import netns
from testbed.actions import Change, Context
from testbed.agent import nlbatch, nlmsg, nsutil
from testbed.checks import HEAL, Finding, Observation, fail, ok
from testbed.network.registry import NetworkMode, register
from testbed.network.underlay import NODE_IF
from testbed.plan.cluster import NodePlan

if TYPE_CHECKING:
    from testbed.agent.iproute import IPRoute

DEVICE = "vxlan0"
RTNH_F_ONLINK = 4


def _device(nd: IPRoute, node: NodePlan, vni: int, port: int, mtu: int) -> tuple[int, bool]:
    """The node's device, and whether it was made now (then it holds no entry yet)."""
    uplink = netns.one(nd, NODE_IF)
    idx = netns.one(nd, DEVICE)
    if idx is not None:
        info = dict(nd.get_links(idx)[0].get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")["attrs"])
        if (info.get("IFLA_VXLAN_ID"), info.get("IFLA_VXLAN_PORT"), info.get("IFLA_VXLAN_LOCAL")) != (
                vni, port, node.underlay_ip):
            nd.link("del", index=idx)
            idx = None
    created = idx is None
    if idx is None:
        nd.link("add", ifname=DEVICE, kind="vxlan", vxlan_id=vni, vxlan_port=port, vxlan_local=node.underlay_ip,
                vxlan_link=uplink, vxlan_learning=0, mtu=mtu, address=node.vtep_mac)
        idx = netns.one(nd, DEVICE)
    nd.link("set", index=idx, mtu=mtu, address=node.vtep_mac, state="up")
    netns.sync_addresses(nd, idx, [(node.vtep4, 32)] + ([(node.vtep6, 128)] if node.vtep6 else []))
    return idx, created


CHUNK = 128  # requests a write: their acknowledgements must fit the socket's receive buffer


def _send(path: str, requests: list[bytes]) -> None:
    """The requests in batches, on a netlink socket made in the node's netns; each must succeed."""
    with nsutil.entered(path):
        sock = nlbatch.open_socket()
    with sock:
        for start in range(0, len(requests), CHUNK):
            failed = [e for e in nlbatch.send(sock, b"".join(requests[start:start + CHUNK])) if e]
            if failed:
                raise OSError(failed[0], f"{DEVICE} peer entries: {os.strerror(failed[0])}")


def _peers(nd: IPRoute, path: str, idx: int, peers: list[NodePlan], fresh: bool) -> None:
    """Every peer's FDB entry, neighbours and routes, in one batch per node (at 250 nodes the lab writes
    190,000 of them); then, unless the device is new, what the plan no longer has goes."""
    want_routes: set[str] = set()
    want_neigh: set[str] = set()
    want_fdb: set[str] = set()
    requests = []
    for peer in peers:
        requests.append(nlmsg.fdb(idx, peer.vtep_mac, peer.underlay_ip, nlmsg.NUD_PERMANENT | nlmsg.NUD_NOARP,
                                  nlmsg.NTF_SELF))
        want_fdb.add(peer.vtep_mac)
        for gw, cidr in [(peer.vtep4, peer.cidr4)] + ([(peer.vtep6, peer.cidr6)] if peer.vtep6 and peer.cidr6 else []):
            requests += [nlmsg.neigh(idx, gw, peer.vtep_mac, nlmsg.NUD_PERMANENT),
                         nlmsg.route(cidr, gw, idx, RTNH_F_ONLINK)]
            want_neigh.add(gw)
            want_routes.add(cidr)
    _send(path, requests)
    if fresh:
        return
    # entries for nodes no longer in the plan
    for family in (socket.AF_INET, socket.AF_INET6):
        for r in nd.get_routes(family=family, oif=idx):
            dst = r.get_attr("RTA_DST")
            if dst and r.get_attr("RTA_GATEWAY") and f"{dst}/{r['dst_len']}" not in want_routes:
                nd.route("del", dst=f"{dst}/{r['dst_len']}", oif=idx, family=family)
        for n in nd.get_neighbours(family=family, ifindex=idx):
            if n.get_attr("NDA_DST") not in want_neigh:
                nd.neigh("del", ifindex=idx, dst=n.get_attr("NDA_DST"), family=family)
    for f in nd.fdb("dump", ifindex=idx):
        mac = f.get_attr("NDA_LLADDR")
        if mac and mac not in want_fdb and f.get_attr("NDA_DST"):
            nd.fdb("del", ifindex=idx, lladdr=mac, dst=f.get_attr("NDA_DST"))


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
        net = ctx.plan.topology.networking
        for node in ctx.plan.nodes:
            path = ctx.netns(node.name)
            with netns.ipr(path) as nd:
                idx, fresh = _device(nd, node, net.vxlan.vni, net.vxlan.port, ctx.plan.pod_mtu)
                _peers(nd, path, idx, [p for p in ctx.plan.nodes if p.name != node.name], fresh)
        return Change(changed=len(ctx.plan.nodes))

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
        removed = 0
        for node in ctx.plan.nodes:
            with netns.ipr(ctx.netns(node.name)) as nd:
                idx = netns.one(nd, DEVICE)
                if idx is not None:
                    nd.link("del", index=idx)
                    removed += 1
        return Change(removed=removed)
