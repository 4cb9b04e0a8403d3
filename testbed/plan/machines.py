"""The lab's machines beside the nodes: the router (the top-of-rack router, on the underlay and on the external
segment) and the external hosts behind it. Pure planning: addresses, ASNs, container names."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network

from testbed.model.hosts import HostSpec
from testbed.model.topology import Topology

ROUTER = "router"
FABRIC = "fabric"
EXTERNAL_HOST_OFFSET = 10  # .1 is the router's side of the segment


@dataclass
class RouterPlan:
    name: str
    container: str
    underlay_ip: str
    external_ip: str
    asn: int
    underlay_ip6: str | None = None
    external_ip6: str | None = None
    role: str = "router"
    host: str = ""


@dataclass
class FabricPlan:
    """The machine that holds the lab's segment bridges (the underlay and the external segment) in its own network
    namespace, and wires every machine's link to them (agent/fabric.py)."""

    name: str
    container: str
    host: str = ""
    role: str = "fabric"


@dataclass
class ExternalPlan:
    name: str
    container: str
    role: str  # dns | web
    ip: str
    gateway: str
    prefix: int
    ip6: str | None = None
    gateway6: str | None = None
    prefix6: int | None = None
    host: str = ""


def underlay_v6(underlay: IPv4Network) -> IPv6Network:
    """The underlay's IPv6 range, with dual stack: a ULA /64 that embeds the IPv4 range, so it is as unique
    as the labs' IPv4 underlays are."""
    return IPv6Network(((0xFD64 << 112) | (int(underlay.network_address) << 64), 64))


def container_name(lab: str, machine: str) -> str:
    return f"{lab}-{machine}"


LOCAL_HOST = "local"


def hosts(topo: Topology) -> list[HostSpec]:
    """The lab's hosts; without `hosts:`, the engine the docker CLI picks, as the one host `local`."""
    return list(topo.hosts) or [HostSpec(name=LOCAL_HOST)]


def fabrics(topo: Topology) -> list[FabricPlan]:
    """One fabric machine per host: `fabric` on the first, `fabric-<host>` on the others."""
    names = [h.name for h in hosts(topo)]
    return [FabricPlan(name := FABRIC if i == 0 else f"{FABRIC}-{h}", container_name(topo.name, name), h)
            for i, h in enumerate(names)]


def placement(topo: Topology) -> list[str]:
    """Each node's host: the one it names, else the host with the fewest nodes so far (the first, on a tie)."""
    names = [h.name for h in hosts(topo)]
    load = dict.fromkeys(names, 0)
    for spec in topo.nodes:
        if spec.host:
            load[spec.host] += 1
    out = []
    for spec in topo.nodes:
        if spec.host:
            out.append(spec.host)
            continue
        host = min(names, key=lambda h: (load[h], names.index(h)))
        load[host] += 1
        out.append(host)
    return out


def router(topo: Topology, underlay: IPv4Network) -> RouterPlan:
    ext, net = topo.external, topo.networking
    out = RouterPlan(ROUTER, container_name(topo.name, ROUTER), str(underlay[1]), str(ext.cidr[1]), net.bgp.asn,
                     host=hosts(topo)[0].name)
    if net.dualStack:
        out.underlay_ip6, out.external_ip6 = str(underlay_v6(underlay)[1]), str(ext.cidrV6[1])
    return out


def externals(topo: Topology) -> list[ExternalPlan]:
    ext, dual = topo.external, topo.networking.dualStack
    out = []
    for i, host in enumerate(ext.hosts):
        plan = ExternalPlan(host.name, container_name(topo.name, host.name), host.role,
                            str(ext.cidr[EXTERNAL_HOST_OFFSET + i]), str(ext.cidr[1]), ext.cidr.prefixlen,
                            host=hosts(topo)[0].name)
        if dual:
            plan.ip6, plan.gateway6 = str(ext.cidrV6[EXTERNAL_HOST_OFFSET + i]), str(ext.cidrV6[1])
            plan.prefix6 = ext.cidrV6.prefixlen
        out.append(plan)
    return out
