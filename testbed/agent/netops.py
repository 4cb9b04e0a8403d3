"""The machine-level network work the lab's steps ask of a machine (its default route, its pod bridge, its VXLAN
device and peers, routes of one owner, addresses on its loopback, proxy ARP and NDP), done by the machine's own
agent in its own namespace: the command line sends what it wants as JSON (the `netops` op), whichever host the
machine is on, so one code path serves a lab on one engine and on several.

Each operation is a function of a netlink handle in the machine's namespace and JSON arguments; it returns
JSON."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable
from typing import Any

from testbed.agent import nlbatch, nldump, nlmsg, nsutil
from testbed.agent.links import one, route_dst, sync_addresses, sync_routes, vxlan_is

OPS: dict[str, Callable[..., Any]] = {}
RTNH_F_ONLINK = 4
CHUNK = 128  # requests a write: their acknowledgements must fit the socket's receive buffer


def op(fn: Callable[..., Any]) -> Callable[..., Any]:
    OPS[fn.__name__] = fn
    return fn


def run(name: str, args: dict[str, Any]) -> Any:
    """In this process's namespace (the machine's: the agent's main thread never leaves it)."""
    from testbed.agent.iproute import IPRoute

    if name not in OPS:
        raise ValueError(f"unknown netops {name!r}; known: {', '.join(sorted(OPS))}")
    with IPRoute() as nd:
        return OPS[name](nd, **args)


@op
def routes(nd: Any, proto: int, wanted: dict[str, dict[str, Any]]) -> list[int]:
    """The routes of one owner (a protocol number) are exactly wanted: destination → {gateway} or {dev}."""
    resolved = {dst: ({"oif": one(nd, a["dev"])} if "dev" in a else a) for dst, a in wanted.items()}
    return list(sync_routes(nd, proto, resolved))


@op
def learnt(nd: Any, proto: int) -> list[str]:
    """The destinations of the main table's routes of one protocol number (BIRD's, say)."""
    return sorted({route_dst(r) for family in (socket.AF_INET, socket.AF_INET6)
                   for r in nd.get_routes(family=family, table=254) if r["proto"] == proto})


@op
def bridge(nd: Any, name: str, mtu: int, mac: str, addresses: list[list[Any]]) -> bool:
    """A bridge with a fixed MAC and exactly these addresses; whether it was made now."""
    idx = one(nd, name)
    made = idx is None
    if made:
        nd.link("add", ifname=name, kind="bridge", mtu=mtu, address=mac)
        idx = one(nd, name)
    sync_addresses(nd, idx, [(a, p) for a, p in addresses])
    nd.link("set", index=idx, mtu=mtu, address=mac, state="up")
    return made


@op
def drop_link(nd: Any, name: str) -> int:
    """The link gone (with its FDB, neighbours and routes); 1 if it was there."""
    idx = one(nd, name)
    if idx is None:
        return 0
    nd.link("del", index=idx)
    return 1


@op
def loopback(nd: Any, addresses: list[str], proxy_ndp_dev: str | None = None) -> None:
    """The loopback holds exactly these global addresses (its link-local ones are another owner's); IPv6 ones are
    answered by proxy NDP on proxy_ndp_dev."""
    sync_addresses(nd, 1, [(ip, 128 if ":" in ip else 32) for ip in addresses], link_local=False)
    six = [ip for ip in addresses if ":" in ip]
    if six and proxy_ndp_dev:
        dev = one(nd, proxy_ndp_dev)
        for ip in six:
            with contextlib.suppress(Exception):
                nd.neigh("replace", dst=ip, ifindex=dev, flags=nlmsg.NTF_PROXY, family=socket.AF_INET6)
        nsutil.write_sysctl(f"net.ipv6.conf.{proxy_ndp_dev}.proxy_ndp", 1)


@op
def address(nd: Any, ifname: str, address: str, prefixlen: int, present: bool) -> None:
    """One address added or removed (there already, or already gone, is fine)."""
    with contextlib.suppress(Exception):
        nd.addr("add" if present else "del", index=one(nd, ifname), address=address, prefixlen=prefixlen)


@op
def proxies(nd: Any, bridge: str, on: bool, ndp: bool, wanted: list[str]) -> None:
    """Proxy ARP on the bridge (the kernel answers for addresses routed elsewhere), proxy NDP with exactly these
    IPv6 entries."""
    with contextlib.suppress(FileNotFoundError):
        nsutil.write_sysctl(f"net.ipv4.conf.{bridge}.proxy_arp", int(on))
        if ndp:
            nsutil.write_sysctl(f"net.ipv6.conf.{bridge}.proxy_ndp", int(on))
    idx = one(nd, bridge)
    if idx is None:
        return
    have = {n.get_attr("NDA_DST") for n in nd.get_neighbours(family=socket.AF_INET6, ifindex=idx)
            if n["flags"] & nlmsg.NTF_PROXY}
    for ip in have - set(wanted):
        nd.neigh("del", dst=ip, ifindex=idx, flags=nlmsg.NTF_PROXY, family=socket.AF_INET6)
    for ip in set(wanted) - have:
        nd.neigh("add", dst=ip, ifindex=idx, flags=nlmsg.NTF_PROXY, family=socket.AF_INET6)


def _device(nd: Any, name: str, vni: int, port: int, local: str, uplink: str, mtu: int, mac: str,
            addresses: list[list[Any]]) -> tuple[int, bool]:
    """The device, and whether it was made now (then it holds no entry yet)."""
    idx = one(nd, name)
    if idx is not None and not vxlan_is(nd, idx, vni, port, local):
        nd.link("del", index=idx)
        idx = None
    created = idx is None
    if idx is None:
        nd.link("add", ifname=name, kind="vxlan", vxlan_id=vni, vxlan_port=port, vxlan_local=local,
                vxlan_link=one(nd, uplink), vxlan_learning=0, mtu=mtu, address=mac)
        idx = one(nd, name)
    nd.link("set", index=idx, mtu=mtu, address=mac, state="up")
    sync_addresses(nd, idx, [(a, p) for a, p in addresses])
    return idx, created


def _send(requests: list[bytes], name: str) -> None:
    """The requests in batches; each must succeed."""
    with nlbatch.open_socket() as sock:
        for start in range(0, len(requests), CHUNK):
            failed = [e for e in nlbatch.send(sock, b"".join(requests[start:start + CHUNK])) if e]
            if failed:
                raise OSError(failed[0], f"{name} peer entries: {os.strerror(failed[0])}")


@op
def vxlan(nd: Any, name: str, vni: int, port: int, local: str, uplink: str, mtu: int, mac: str,
          addresses: list[list[Any]], peers: list[dict[str, Any]]) -> bool:
    """The device, and every peer's FDB entry, neighbours and routes in one batch (at 250 nodes a lab writes
    190,000 of them); then, unless the device is new, what the peers no longer have goes. Each peer: {mac,
    underlay, routes: [[vtep address, pod range]]}. Whether the device was made now."""
    idx, fresh = _device(nd, name, vni, port, local, uplink, mtu, mac, addresses)
    want_routes: set[str] = set()
    want_neigh: set[str] = set()
    want_fdb: set[str] = set()
    requests = []
    for peer in peers:
        requests.append(nlmsg.fdb(idx, peer["mac"], peer["underlay"], nlmsg.NUD_PERMANENT | nlmsg.NUD_NOARP,
                                  nlmsg.NTF_SELF))
        want_fdb.add(peer["mac"])
        for gw, cidr in peer["routes"]:
            requests += [nlmsg.neigh(idx, gw, peer["mac"], nlmsg.NUD_PERMANENT),
                         nlmsg.route(cidr, gw, idx, RTNH_F_ONLINK)]
            want_neigh.add(gw)
            want_routes.add(cidr)
    _send(requests, name)
    if fresh:
        return True
    for family in (socket.AF_INET, socket.AF_INET6):
        for dst in nldump.gateway_routes(family, idx):
            if dst not in want_routes:
                nd.route("del", dst=dst, oif=idx, family=family)
        for gw, _ in nldump.neighbours(family, idx):
            if gw and gw not in want_neigh:
                nd.neigh("del", ifindex=idx, dst=gw, family=family)
    for remote, mac in nldump.neighbours(nldump.AF_BRIDGE, idx):
        if mac and mac not in want_fdb and remote:
            nd.fdb("del", ifindex=idx, lladdr=mac, dst=remote)
    return False
