"""The topology's `hosts:` and `stitch:`: one lab over several Docker engines, as containerlab's vxlan-stitch and
netlab's multi-server labs do. Each host runs its share of the machines on its own engine; the hosts' fabric
bridges are joined by VXLAN over the hosts' own network."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from testbed.model.labels import dns_label

STITCH_OVERHEAD = 50  # the stitch's VXLAN: outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8


class HostSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    name: Annotated[str, AfterValidator(dns_label)] = Field(description="Host name (DNS-1123 label), unique")
    engine: str | None = Field(None, description="Its Docker engine: unix://, tcp:// (TLS from DOCKER_CERT_PATH "
                                                  "or a context), ssh:// or context:NAME; default: as the docker "
                                                  "CLI picks one")
    address: IPv4Address | None = Field(None, description="Where the other hosts reach it (the stitch's VXLAN "
                                                          "endpoint); needed with two hosts or more")


class Stitch(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    port: int = Field(4790, ge=1, le=65535, description="UDP port of the VXLAN between the hosts' fabrics")


def check_hosts(hosts: list[HostSpec]) -> list[HostSpec]:
    """Unique names and addresses; with two hosts or more, each has an address (the stitch needs it)."""
    names = [h.name for h in hosts]
    if dup := sorted({n for n in names if names.count(n) > 1}):
        raise ValueError(f"host names must be unique; repeated: {', '.join(dup)}")
    if len(hosts) > 1:
        for i, h in enumerate(hosts):
            if h.address is None:
                raise ValueError(f"hosts[{i}] ({h.name}) has no address: with two hosts or more, each needs the "
                                 "address its peers reach it on (the fabrics are stitched by VXLAN)")
    seen: dict[IPv4Address, str] = {}
    for i, h in enumerate(hosts):
        if h.address is not None and h.address in seen:
            raise ValueError(f"hosts[{i}].address {h.address} is also {seen[h.address]}'s: each host needs its own")
        if h.address is not None:
            seen[h.address] = h.name
    return hosts


def check_placement(nodes: list[object], hosts: list[HostSpec]) -> None:
    """Each node's `host:` names a host of the list."""
    known = [h.name for h in hosts]
    for i, node in enumerate(nodes):
        host = getattr(node, "host", None)
        if host is not None and host not in known:
            raise ValueError(f"nodes[{i}].host {host!r} is not a host of the lab"
                             + (f" (hosts: {', '.join(known)})" if known else " (the topology has no hosts:)"))


def check_stitch(stitch: Stitch, pod_network_port: int, network: str) -> Stitch:
    if network == "vxlan" and stitch.port == pod_network_port:
        raise ValueError(f"stitch.port {stitch.port} is the pod network's VXLAN port (networking.vxlan.port): "
                         "give the stitch another")
    return stitch
