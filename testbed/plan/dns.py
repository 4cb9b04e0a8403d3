"""Cluster DNS records, per the Kubernetes DNS-Based Service Discovery specification (schema 1.1.0), rendered as
zone files: the cluster domain, and reverse zones for the service and pod ranges. Pure, unit-tested.

- A/AAAA `<svc>.<ns>.svc.<zone>` for a ClusterIP Service; for a headless one, one per ready endpoint;
- `<hostname>.<svc>.<ns>.svc.<zone>` for each endpoint (its pod's hostname with a matching subdomain, or the
  address with dashes);
- SRV `_<port>._<proto>.<svc>.<ns>.svc.<zone>` for named ports (one per endpoint when headless);
- CNAME for ExternalName; pod records `a-b-c-d.<ns>.pod.<zone>`; TXT `dns-version.<zone>`;
- PTR for Service IPs and endpoint IPs, in both families.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

from testbed.plan.cluster import Plan

TTL = 5
SCHEMA_VERSION = "1.1.0"


def dashed(ip: str) -> str:
    return ip.replace(".", "-").replace(":", "-")


def reverse_zone(cidr: IPv4Network | IPv6Network) -> str:
    """The reverse zone that holds a range: on an octet (nibble) boundary at or above its prefix."""
    step = 8 if cidr.version == 4 else 4
    prefix = cidr.prefixlen - cidr.prefixlen % step
    name = ip_network(f"{cidr.network_address}/{prefix}", strict=False).network_address.reverse_pointer
    return ".".join(name.split(".")[(cidr.max_prefixlen - prefix) // step:])


def _rtype(ip: str) -> str:
    return "AAAA" if ":" in ip else "A"


def records(plan: Plan, zone: str) -> tuple[list[str], dict[str, list[str]]]:
    """(the cluster zone's records, {reverse zone: its PTR records}); names relative to their zone."""
    out = [f'dns-version TXT "{SCHEMA_VERSION}"']
    ptr: dict[str, str] = {}
    for svc in plan.services:
        base = f"{svc.name}.{svc.namespace}.svc"
        if svc.type == "ExternalName":
            out.append(f"{base} CNAME {svc.external_name.rstrip('.')}.")
            continue
        named = [p for p in svc.ports if p.name]
        if not svc.headless:
            out += [f"{base} {_rtype(ip)} {ip}" for ip in svc.cluster_ips]
            out += [f"_{p.name}._{p.protocol.lower()}.{base} SRV 0 100 {p.port} {base}.{zone}." for p in named]
            ptr |= {ip: f"{base}.{zone}." for ip in svc.cluster_ips}
            continue
        for e in svc.endpoints:
            if not (e.ready or svc.publish_not_ready):
                continue
            host = e.hostname or dashed(e.ips[0])
            for ip in e.ips:
                out += [f"{base} {_rtype(ip)} {ip}", f"{host}.{base} {_rtype(ip)} {ip}"]
                ptr[ip] = f"{host}.{base}.{zone}."
            out += [f"_{p.name}._{p.protocol.lower()}.{base} SRV 0 100 {e.ports[p.key]} {host}.{base}.{zone}."
                    for p in named if p.key in e.ports]
    for pod in plan.pods:
        out += [f"{dashed(ip)}.{pod.namespace}.pod {_rtype(ip)} {ip}" for ip in (pod.ipv4, pod.ipv6) if ip]
    net = plan.topology.networking
    ranges = [net.serviceCIDR, net.podCIDR] + ([net.serviceCIDRv6, net.podCIDRv6] if net.dualStack else [])
    reverse: dict[str, list[str]] = {reverse_zone(r): [] for r in ranges}
    for ip, name in sorted(ptr.items()):
        pointer = ip_address(ip).reverse_pointer
        for rz in reverse:
            if pointer.endswith("." + rz):
                reverse[rz].append(f"{pointer[:-len(rz) - 1]} PTR {name}")
                break
    return sorted(set(out)), reverse


def zone_file(origin: str, cluster_zone: str, ns_ip: str, rows: list[str], serial: int = 1) -> str:
    """A zone; its name server is ns.dns.<cluster zone> (the kube-dns address), for the reverse zones too."""
    ns = f"ns.dns.{cluster_zone}."
    head = [f"$ORIGIN {origin}.", f"$TTL {TTL}", f"@ SOA {ns} hostmaster.{cluster_zone}. {serial} 3600 600 86400 {TTL}",
            f"@ NS {ns}"]
    if origin == cluster_zone:
        head.append(f"ns.dns {_rtype(ns_ip)} {ns_ip}")
    return "\n".join(head + rows) + "\n"
