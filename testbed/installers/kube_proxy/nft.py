"""kube-proxy's nftables mode, rendered: one table per node, `inet testbed-proxy`, applied as one transaction.

Shaped for nft 1.0.6, which slows down with the number of chains: Services are found through verdict maps
(address . protocol . port → the Service port's chain), and each Service port's chain picks its endpoint with
one `dnat … numgen random mod N map { … }` rule, so the table holds one chain per Service port and family, not
one per endpoint. Only a Service with ClientIP affinity gets a chain per endpoint (its affinity set lives
there). Services without endpoints are rejected in the filter hooks; masquerading is a mark, applied in
postrouting, plus a set of this node's endpoints for hairpin traffic.
"""

from __future__ import annotations

from testbed.installers.kube_proxy.view import MASQ_MARK, Entry, NodeView

FAMILY, TABLE = "inet", "testbed-proxy"
IP = {4: "ip", 6: "ip6"}
ADDR = {4: "ipv4_addr", 6: "ipv6_addr"}


def _target(family: int, ip: str, port: int) -> str:
    return f"{ip}:{port}" if family == 4 else f"[{ip}]:{port}"


def _dnat(e: Entry, targets: list[tuple[str, int]]) -> str:
    ip = IP[e.family]
    if len(targets) == 1:
        return f"meta l4proto {e.protocol} dnat {ip} to {_target(e.family, *targets[0])}"
    elements = ", ".join(f"{i} : {addr} . {port}" for i, (addr, port) in enumerate(targets))
    return f"meta l4proto {e.protocol} dnat {ip} addr . port to numgen random mod {len(targets)} map {{ {elements} }}"


def _dispatch(e: Entry, chain: str, targets: list[tuple[str, int]], out: list[str]) -> list[str]:
    """The rules that send a connection to one of targets; with affinity, per-endpoint chains go to out."""
    if not targets:
        return ["drop"]  # Local traffic policy, and no endpoint on this node
    if not e.affinity:
        return [_dnat(e, targets)]
    rules = []
    for i, (addr, port) in enumerate(targets):
        ep = f"{chain}-ep{i}"
        out.append(f"  set {ep} {{ type {ADDR[e.family]}; flags dynamic,timeout; timeout {e.affinity}s; }}")
        out.append(f"  chain {ep} {{ update @{ep} {{ {IP[e.family]} saddr }}; "
                   f"meta l4proto {e.protocol} dnat {IP[e.family]} to {_target(e.family, addr, port)}; }}")
        rules.append(f"{IP[e.family]} saddr @{ep} goto {ep}")
    pick = ", ".join(f"{i} : goto {chain}-ep{i}" for i in range(len(targets)))
    return [*rules, f"numgen random mod {len(targets)} vmap {{ {pick} }}"]


def _map(name: str, key: str, elements: list[str]) -> str:
    body = f" elements = {{ {', '.join(elements)} }};" if elements else ""
    return f"  map {name} {{ type {key} : verdict;{body} }}"


def render(view: NodeView) -> str:
    chains: list[str] = []
    extra: list[str] = []
    maps: dict[str, list[str]] = {f"{kind}{f}": [] for kind in ("cluster", "external", "nodeports", "reject",
                                                               "rejectports") for f in (4, 6)}
    for e in view.entries:
        proto, fam = e.protocol, e.family
        if not e.endpoints:
            for ip in e.cluster_ips + e.external_ips:
                maps[f"reject{fam}"].append(f"{ip} . {proto} . {e.port} : goto reject-service")
            if e.node_port:
                maps[f"rejectports{fam}"].append(f"{proto} . {e.node_port} : goto reject-service")
            continue
        svc, ext = f"svc-{e.id}", f"ext-{e.id}"
        if e.cluster_ips:
            rules = [f"{IP[fam]} saddr != {view.pod_cidrs[fam]} jump mark-masq"] if fam in view.pod_cidrs else []
            rules += _dispatch(e, svc, e.cluster_targets(), extra)
            chains.append(f"  chain {svc} {{ {'; '.join(rules)}; }}")
            maps[f"cluster{fam}"] += [f"{ip} . {proto} . {e.port} : goto {svc}" for ip in e.cluster_ips]
        if e.external_ips or e.node_port:
            rules = [] if e.external_local else ["jump mark-masq"]
            rules += _dispatch(e, ext, e.external_targets(), extra)
            chains.append(f"  chain {ext} {{ {'; '.join(rules)}; }}")
            maps[f"external{fam}"] += [f"{ip} . {proto} . {e.port} : goto {ext}" for ip in e.external_ips]
            if e.node_port:
                maps[f"nodeports{fam}"].append(f"{proto} . {e.node_port} : goto {ext}")
    lines = [f"table {FAMILY} {TABLE} {{"]
    for fam in (4, 6):
        key = f"{ADDR[fam]} . inet_proto . inet_service"
        lines += [_map(f"cluster{fam}", key, maps[f"cluster{fam}"]),
                  _map(f"external{fam}", key, maps[f"external{fam}"]),
                  _map(f"reject{fam}", key, maps[f"reject{fam}"]),
                  _map(f"nodeports{fam}", "inet_proto . inet_service", maps[f"nodeports{fam}"]),
                  _map(f"rejectports{fam}", "inet_proto . inet_service", maps[f"rejectports{fam}"])]
        hairpin = view.hairpin(fam)
        body = f" elements = {{ {', '.join(f'{ip} . {ip}' for ip in hairpin)} }};" if hairpin else ""
        lines.append(f"  set hairpin{fam} {{ type {ADDR[fam]} . {ADDR[fam]};{body} }}")
    lines += [
        "  chain services {",
        *[f"    {IP[f]} daddr . meta l4proto . th dport vmap @{kind}{f}" for f in (4, 6)
          for kind in ("cluster", "external")],
        *[f"    meta nfproto {'ipv4' if f == 4 else 'ipv6'} fib daddr type local meta l4proto . th dport vmap "
          f"@nodeports{f}" for f in (4, 6)],
        "  }",
        "  chain no-endpoints {",
        *[f"    {IP[f]} daddr . meta l4proto . th dport vmap @reject{f}" for f in (4, 6)],
        *[f"    meta nfproto {'ipv4' if f == 4 else 'ipv6'} fib daddr type local meta l4proto . th dport vmap "
          f"@rejectports{f}" for f in (4, 6)],
        "  }",
        "  chain reject-service { reject; }",
        f"  chain mark-masq {{ meta mark set meta mark | {MASQ_MARK:#x}; }}",
        "  chain prerouting { type nat hook prerouting priority dstnat; policy accept; jump services; }",
        "  chain output { type nat hook output priority -100; policy accept; jump services; }",
        "  chain postrouting { type nat hook postrouting priority srcnat; policy accept; "
        f"meta mark & {MASQ_MARK:#x} == {MASQ_MARK:#x} masquerade; "
        "ip saddr . ip daddr @hairpin4 masquerade; ip6 saddr . ip6 daddr @hairpin6 masquerade; }",
        *[f"  chain filter-{hook} {{ type filter hook {hook} priority filter; policy accept; jump no-endpoints; }}"
          for hook in ("input", "forward", "output")],
        *extra, *chains, "}"]
    return "\n".join(lines) + "\n"


__all__ = ["FAMILY", "TABLE", "render"]
