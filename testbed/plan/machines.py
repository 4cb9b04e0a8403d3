"""The lab's machines beside the nodes: the router (the top-of-rack router, on the underlay and on the external
segment) and the external hosts behind it. Pure planning: addresses, ASNs, container names."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network

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


@dataclass
class FabricPlan:
    """The machine that holds the lab's segment bridges (the underlay and the external segment) in its own network
    namespace, and wires every machine's link to them (agent/fabric.py)."""

    name: str
    container: str
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


def underlay_v6(underlay: IPv4Network) -> IPv6Network:
    """The underlay's IPv6 range, with dual stack: a ULA /64 that embeds the IPv4 range, so it is as unique
    as the labs' IPv4 underlays are."""
    return IPv6Network(((0xFD64 << 112) | (int(underlay.network_address) << 64), 64))


def container_name(lab: str, machine: str) -> str:
    return f"{lab}-{machine}"


def fabric(topo: Topology) -> FabricPlan:
    return FabricPlan(FABRIC, container_name(topo.name, FABRIC))


def router(topo: Topology, underlay: IPv4Network) -> RouterPlan:
    ext, net = topo.external, topo.networking
    out = RouterPlan(ROUTER, container_name(topo.name, ROUTER), str(underlay[1]), str(ext.cidr[1]), net.bgp.asn)
    if net.dualStack:
        out.underlay_ip6, out.external_ip6 = str(underlay_v6(underlay)[1]), str(ext.cidrV6[1])
    return out


def externals(topo: Topology) -> list[ExternalPlan]:
    ext, dual = topo.external, topo.networking.dualStack
    out = []
    for i, host in enumerate(ext.hosts):
        plan = ExternalPlan(host.name, container_name(topo.name, host.name), host.role,
                            str(ext.cidr[EXTERNAL_HOST_OFFSET + i]), str(ext.cidr[1]), ext.cidr.prefixlen)
        if dual:
            plan.ip6, plan.gateway6 = str(ext.cidrV6[EXTERNAL_HOST_OFFSET + i]), str(ext.cidrV6[1])
            plan.prefix6 = ext.cidrV6.prefixlen
        out.append(plan)
    return out
