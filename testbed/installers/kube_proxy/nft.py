"""kube-proxy's nftables mode, rendered: one table per node, `inet testbed-proxy`, applied as one transaction.

Shaped for nft 1.0.6, where what costs is the number of chains and of anonymous maps (measured: 5,000 Services
x 10 endpoints load in 11 s as one chain and one `numgen ... map { }` each, in 1 s as below). A Service port is
a few set and map elements, not a chain: its frontend (address . protocol . port) sits in the set of Services
with the same number of endpoints N, and one rule per N picks the endpoint with
`dnat to ip daddr . meta l4proto . th dport . numgen random mod N map @endpoints`, the map holding each
Service's N slots. A change of one endpoint is then one map element. Only a Service with ClientIP affinity
keeps a chain per endpoint (its affinity set lives there), reached through a verdict map. Services without
endpoints are rejected in the filter hooks; masquerading is a mark, applied in postrouting, plus a set of this
node's endpoints for hairpin traffic.
"""

from __future__ import annotations

from testbed.installers.kube_proxy.view import MASQ_MARK, Entry, NodeView

FAMILY, TABLE = "inet", "testbed-proxy"
IP = {4: "ip", 6: "ip6"}
ADDR = {4: "ipv4_addr", 6: "ipv6_addr"}
NFPROTO = {4: "ipv4", 6: "ipv6"}
TRANSPORT = "meta l4proto { tcp, udp, sctp }"  # dnat to a port needs a transport protocol match first
KINDS = ("cl", "ext", "np")  # by cluster IP, by external or LoadBalancer IP, by node port


def _target(family: int, ip: str, port: int) -> str:
    return f"{ip}:{port}" if family == 4 else f"[{ip}]:{port}"


def _affinity_chains(e: Entry, chain: str, targets: list[tuple[str, int]], out: list[str]) -> list[str]:
    """ClientIP affinity: a chain per endpoint that records the client, checked before a random pick."""
    rules = []
    for i, (addr, port) in enumerate(targets):
        ep = f"{chain}-ep{i}"
        out.append(f"  set {ep} {{ type {ADDR[e.family]}; flags dynamic,timeout; timeout {e.affinity}s; }}")
        out.append(f"  chain {ep} {{ update @{ep} {{ {IP[e.family]} saddr }}; "
                   f"meta l4proto {e.protocol} dnat {IP[e.family]} to {_target(e.family, addr, port)}; }}")
        rules.append(f"{IP[e.family]} saddr @{ep} goto {ep}")
    pick = ", ".join(f"{i} : goto {chain}-ep{i}" for i in range(len(targets)))
    return [*rules, f"numgen random mod {len(targets)} vmap {{ {pick} }}"]


def _elements(elements: list[str]) -> str:
    return f" elements = {{ {', '.join(elements)} }};" if elements else ""


class _Kind:
    """One way in (cluster IPs, external IPs, node ports) in one family: its sets and maps as they fill."""

    def __init__(self, kind: str, family: int) -> None:
        self.kind, self.family = kind, family
        self.masq: list[str] = []
        self.drop: list[str] = []
        self.by_count: dict[int, list[str]] = {}
        self.endpoints: list[str] = []
        self.affinity: list[str] = []  # verdict map elements to affinity chains

    def add(self, keys: list[str], targets: list[tuple[str, int]], masq: bool) -> None:
        if masq:
            self.masq += keys
        if not targets:  # a Local traffic policy, and no endpoint on this node
            self.drop += keys
            return
        self.by_count.setdefault(len(targets), []).extend(keys)
        self.endpoints += [f"{k} . {i} : {addr} . {port}" for k in keys for i, (addr, port) in enumerate(targets)]

    @property
    def key(self) -> str:
        """The frontend as nft reads it from a packet."""
        ip = IP[self.family]
        return "meta l4proto . th dport" if self.kind == "np" else f"{ip} daddr . meta l4proto . th dport"

    @property
    def keytype(self) -> str:
        return "inet_proto . inet_service" if self.kind == "np" else f"{ADDR[self.family]} . inet_proto . inet_service"

    def declarations(self) -> list[str]:
        ip, name = IP[self.family], f"{self.kind}{self.family}"
        out = [f"  set {name}-masq {{ type {self.keytype};{_elements(self.masq)} }}",
               f"  set {name}-drop {{ type {self.keytype};{_elements(self.drop)} }}",
               f"  map {name}-endpoints {{ typeof {self.key} . numgen random mod 2 : {ip} daddr . th dport;"
               f"{_elements(self.endpoints)} }}",
               f"  map {name}-affinity {{ type {self.keytype} : verdict;{_elements(self.affinity)} }}"]
        out += [f"  set {name}-n{n} {{ type {self.keytype};{_elements(keys)} }}"
                for n, keys in sorted(self.by_count.items())]
        return out

    def rules(self, pod_cidr: str | None) -> list[str]:
        f, ip, name = self.family, IP[self.family], f"{self.kind}{self.family}"
        local = f"meta nfproto {NFPROTO[f]} fib daddr type local " if self.kind == "np" else ""
        match = f"{local}{self.key}"
        out = [f"{match} vmap @{name}-affinity"]
        if self.kind == "cl":  # a cluster IP masquerades only traffic from outside the pods
            if pod_cidr:
                out.append(f"{match} @{name}-masq {ip} saddr != {pod_cidr} jump mark-masq")
        else:
            out.append(f"{match} @{name}-masq jump mark-masq")
        out.append(f"{match} @{name}-drop drop")
        out += [f"{match} @{name}-n{n} {TRANSPORT} dnat {ip} to {self.key} . numgen random mod {n} map "
                f"@{name}-endpoints" for n in sorted(self.by_count)]
        return out


def render(view: NodeView) -> str:
    kinds = {(k, f): _Kind(k, f) for k in KINDS for f in (4, 6)}
    extra: list[str] = []
    reject: dict[str, list[str]] = {f"{kind}{f}": [] for kind in ("reject", "rejectports") for f in (4, 6)}
    for e in view.entries:
        proto, fam = e.protocol, e.family
        if not e.endpoints:
            reject[f"reject{fam}"] += [f"{ip} . {proto} . {e.port} : goto reject-service"
                                       for ip in e.cluster_ips + e.external_ips]
            if e.node_port:
                reject[f"rejectports{fam}"].append(f"{proto} . {e.node_port} : goto reject-service")
            continue
        cluster = [f"{ip} . {proto} . {e.port}" for ip in e.cluster_ips]
        external = [f"{ip} . {proto} . {e.port}" for ip in e.external_ips]
        ports = [f"{proto} . {e.node_port}"] if e.node_port else []
        if e.affinity:
            for kind, keys, chain, targets in (("cl", cluster, f"svc-{e.id}", e.cluster_targets()),
                                               ("ext", external + ports, f"ext-{e.id}", e.external_targets())):
                if not keys:
                    continue
                masq = ([f"{IP[fam]} saddr != {view.pod_cidrs[fam]} jump mark-masq"] if fam in view.pod_cidrs
                        else []) if kind == "cl" else ([] if e.external_local else ["jump mark-masq"])
                rules = masq + (_affinity_chains(e, chain, targets, extra) if targets else ["drop"])
                extra.append(f"  chain {chain} {{ {'; '.join(rules)}; }}")
                kinds[("cl", fam)].affinity += [f"{k} : goto {chain}" for k in cluster] if kind == "cl" else []
                if kind == "ext":
                    kinds[("ext", fam)].affinity += [f"{k} : goto {chain}" for k in external]
                    kinds[("np", fam)].affinity += [f"{k} : goto {chain}" for k in ports]
            continue
        kinds[("cl", fam)].add(cluster, e.cluster_targets(), masq=True)
        kinds[("ext", fam)].add(external, e.external_targets(), masq=not e.external_local)
        kinds[("np", fam)].add(ports, e.external_targets(), masq=not e.external_local)
    lines = [f"table {FAMILY} {TABLE} {{"]
    for fam in (4, 6):
        key = f"{ADDR[fam]} . inet_proto . inet_service"
        lines += [f"  map reject{fam} {{ type {key} : verdict;{_elements(reject[f'reject{fam}'])} }}",
                  f"  map rejectports{fam} {{ type inet_proto . inet_service : verdict;"
                  f"{_elements(reject[f'rejectports{fam}'])} }}"]
        for kind in KINDS:
            lines += kinds[(kind, fam)].declarations()
        hairpin = view.hairpin(fam)
        lines.append(f"  set hairpin{fam} {{ type {ADDR[fam]} . {ADDR[fam]};"
                     f"{_elements([f'{ip} . {ip}' for ip in hairpin])} }}")
    services = [r for fam in (4, 6) for kind in KINDS for r in kinds[(kind, fam)].rules(view.pod_cidrs.get(fam))]
    lines += [
        f"  chain services {{ {'; '.join(services)}; }}",
        "  chain no-endpoints {",
        *[f"    {IP[f]} daddr . meta l4proto . th dport vmap @reject{f}" for f in (4, 6)],
        *[f"    meta nfproto {NFPROTO[f]} fib daddr type local meta l4proto . th dport vmap @rejectports{f}"
          for f in (4, 6)],
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
        *extra, "}"]
    return "\n".join(lines) + "\n"


__all__ = ["FAMILY", "TABLE", "render"]
