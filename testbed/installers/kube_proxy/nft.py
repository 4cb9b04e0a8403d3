"""kube-proxy's nftables mode, rendered: one table per node, `inet testbed-proxy`, applied as one transaction.

Shaped for nft 1.0.6, where what costs is the number of chains and of anonymous maps (measured: 5,000 Services
x 10 endpoints load in 11 s as one chain and one `numgen ... map { }` each, in under 1 s as below). A Service
port is a few set and map elements, not a chain: its frontend (address . protocol . port) maps to the shared
chain for its number of endpoints N, whose one rule picks a slot with
`dnat to ip daddr . meta l4proto . th dport . numgen random mod N map @endpoints`, the map holding each
Service's N slots. Only a Service with ClientIP affinity keeps chains (one per endpoint, with the set of
clients it has seen). Services without endpoints are rejected in the filter hooks; masquerading is a mark,
applied in postrouting, plus the node's own pods for hairpin traffic.

This node's pods and the node itself that dial an external frontend (a node port, an external or LoadBalancer IP) of an
`externalTrafficPolicy: Local` Service take the short-circuit maps (`sc*`) to every ready endpoint, as
kube-proxy sends them to the cluster policy chain: a pod keeps its source address, the node is masqueraded.
After DNAT, a new flow still addressed to a cluster IP matched no Service port and is rejected; one to an
address of the service range that no Service holds is dropped (kube-proxy's cluster-ips check).

Each entry renders to its own elements and objects (`parts`), so a later sync (`patch`) sends only what the
changed entries add and remove: one endpoint changed is two map elements, whatever the number of Services.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field

from testbed.installers.kube_proxy.view import MASQ_MARK, Entry, NodeView, changes

FAMILY, TABLE = "inet", "testbed-proxy"
IP = {4: "ip", 6: "ip6"}
ADDR = {4: "ipv4_addr", 6: "ipv6_addr"}
NFPROTO = {4: "ipv4", 6: "ipv6"}
TRANSPORT = "meta l4proto { tcp, udp, sctp }"  # dnat to a port needs a transport protocol match first
KINDS = ("cl", "ext", "np")  # by cluster IP, by external or LoadBalancer IP, by node port
SHORT = ("scext", "scnp")  # external frontends of Local Services, dialled from a pod or the node itself
MASQ_LOCAL = "fib saddr type local jump mark-masq"  # the node's own source is the frontend's: it must go


def _key(kind: str, family: int) -> str:
    """The frontend as nft reads it from a packet."""
    return "meta l4proto . th dport" if kind.endswith("np") else f"{IP[family]} daddr . meta l4proto . th dport"


def _keytype(kind: str, family: int) -> str:
    return "inet_proto . inet_service" if kind.endswith("np") else f"{ADDR[family]} . inet_proto . inet_service"


def _objects() -> dict[str, tuple[str, str]]:
    """Every fixed set and map: name → (set or map, declaration)."""
    out = {}
    for f in (4, 6):
        out[f"reject{f}"] = ("map", f"type {ADDR[f]} . inet_proto . inet_service : verdict;")
        out[f"rejectports{f}"] = ("map", "type inet_proto . inet_service : verdict;")
        out[f"clusterips{f}"] = ("set", f"type {ADDR[f]};")
        for kind in KINDS + SHORT:
            name, keytype = f"{kind}{f}", _keytype(kind, f)
            if kind in KINDS:
                out[f"{name}-masq"] = ("set", f"type {keytype};")
                out[f"{name}-drop"] = ("set", f"type {keytype};")
            out[f"{name}-frontends"] = ("map", f"type {keytype} : verdict;")
            out[f"{name}-endpoints"] = ("map", f"typeof {_key(kind, f)} . numgen random mod 2 : {IP[f]} daddr . "
                                               "th dport;")
        out[f"hairpin{f}"] = ("set", f"type {ADDR[f]} . {ADDR[f]};")
    return out


OBJECTS = _objects()


@dataclass
class Parts:
    """What one entry puts in the table."""
    elements: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # a map's: "key : value"
    chains: dict[str, str] = field(default_factory=dict)  # its own chains: name → rules
    sets: dict[str, str] = field(default_factory=dict)  # its own sets: name → declaration
    picks: dict[str, str] = field(default_factory=dict)  # the shared chains it sends packets to


def _target(family: int, ip: str, port: int) -> str:
    return f"{ip}:{port}" if family == 4 else f"[{ip}]:{port}"


def _pick(kind: str, family: int, n: int) -> tuple[str, str]:
    name = f"{kind}{family}"
    masq = f"{MASQ_LOCAL}; " if kind in SHORT else ""
    return f"pick-{name}-n{n}", (f"{masq}{TRANSPORT} dnat {IP[family]} to {_key(kind, family)} . numgen random "
                                 f"mod {n} map @{name}-endpoints")


def _add(out: Parts, kind: str, family: int, keys: list[str], targets: list[tuple[str, int]], masq: bool) -> None:
    if not keys or (kind in SHORT and not targets):
        return
    name = f"{kind}{family}"
    if masq:
        out.elements[f"{name}-masq"] += keys
    if not targets:  # a Local traffic policy, and no endpoint on this node
        out.elements[f"{name}-drop"] += keys
        return
    pick, body = _pick(kind, family, len(targets))
    out.picks[pick] = body
    out.elements[f"{name}-frontends"] += [f"{k} : goto {pick}" for k in keys]
    out.elements[f"{name}-endpoints"] += [f"{k} . {i} : {addr} . {port}" for k in keys
                                          for i, (addr, port) in enumerate(targets)]


def _affinity(e: Entry, out: Parts, chain: str, masq: list[str], targets: list[tuple[str, int]]) -> None:
    """ClientIP affinity: a chain per endpoint that records the client, checked before a random pick. An
    endpoint's chain and set are named after what they hold, so an endpoint that stays keeps its clients."""
    ip, rules, picks = IP[e.family], [], []
    for i, (addr, port) in enumerate(targets):
        seen = hashlib.sha256(f"{chain}/{addr}/{port}/{e.protocol}/{e.affinity}".encode()).hexdigest()[:12]
        out.sets[f"seen-{seen}"] = f"type {ADDR[e.family]}; flags dynamic,timeout; timeout {e.affinity}s;"
        out.chains[f"aff-{seen}"] = (f"update @seen-{seen} {{ {ip} saddr }}; meta l4proto {e.protocol} "
                                     f"dnat {ip} to {_target(e.family, addr, port)}")
        rules.append(f"{ip} saddr @seen-{seen} goto aff-{seen}")
        picks.append(f"{i} : goto aff-{seen}")
    pick = [f"numgen random mod {len(targets)} vmap {{ {', '.join(picks)} }}"] if targets else ["drop"]
    out.chains[chain] = "; ".join(masq + rules + pick)


def parts(e: Entry, pod_cidrs: dict[int, str]) -> Parts:
    out, proto, fam = Parts(), e.protocol, e.family
    if not e.endpoints:
        out.elements[f"reject{fam}"] += [f"{ip} . {proto} . {e.port} : goto reject-service"
                                         for ip in e.cluster_ips + e.external_ips]
        if e.node_port:
            out.elements[f"rejectports{fam}"].append(f"{proto} . {e.node_port} : goto reject-service")
        return out
    cluster = [f"{ip} . {proto} . {e.port}" for ip in e.cluster_ips]
    external = [f"{ip} . {proto} . {e.port}" for ip in e.external_ips]
    ports = [f"{proto} . {e.node_port}"] if e.node_port else []
    if not e.affinity:
        _add(out, "cl", fam, cluster, e.cluster_targets(), masq=True)
        _add(out, "ext", fam, external, e.external_targets(), masq=not e.external_local)
        _add(out, "np", fam, ports, e.external_targets(), masq=not e.external_local)
        _add(out, "scext", fam, external, e.short_circuit_targets(), masq=False)
        _add(out, "scnp", fam, ports, e.short_circuit_targets(), masq=False)
        return out
    if cluster:
        chain = f"svc-{e.id}"
        masq = [f"{IP[fam]} saddr != {pod_cidrs[fam]} jump mark-masq"] if fam in pod_cidrs else []
        _affinity(e, out, chain, masq, e.cluster_targets())
        out.elements[f"cl{fam}-frontends"] += [f"{k} : goto {chain}" for k in cluster]
    if external or ports:
        chain = f"ext-{e.id}"
        _affinity(e, out, chain, [] if e.external_local else ["jump mark-masq"], e.external_targets())
        out.elements[f"ext{fam}-frontends"] += [f"{k} : goto {chain}" for k in external]
        out.elements[f"np{fam}-frontends"] += [f"{k} : goto {chain}" for k in ports]
    if (external or ports) and e.external_local:
        chain = f"scx-{e.id}"
        _affinity(e, out, chain, [MASQ_LOCAL], e.short_circuit_targets())
        out.elements[f"scext{fam}-frontends"] += [f"{k} : goto {chain}" for k in external]
        out.elements[f"scnp{fam}-frontends"] += [f"{k} : goto {chain}" for k in ports]
    return out


def _services(view: NodeView) -> list[str]:
    out, pod_cidrs = [], view.pod_cidrs
    for f in (4, 6):
        for kind in KINDS:
            name = f"{kind}{f}"
            local = f"meta nfproto {NFPROTO[f]} fib daddr type local " if kind == "np" else ""
            match = local + _key(kind, f)
            if kind != "cl":
                # first, this node's pods and the node itself: cluster behaviour, whatever the traffic policy
                out.append(f'{local}iifname "{view.local_if}" {_key(kind, f)} vmap @sc{name}-frontends')
                out.append(f"{local}fib saddr type local {_key(kind, f)} vmap @sc{name}-frontends")
                out.append(f"{match} @{name}-masq jump mark-masq")
            elif f in pod_cidrs:  # a cluster IP masquerades only traffic from outside the pods
                out.append(f"{match} @{name}-masq {IP[f]} saddr != {pod_cidrs[f]} jump mark-masq")
            out += [f"{match} @{name}-drop drop", f"{match} vmap @{name}-frontends"]
    return out


def _elements(elements: list[str]) -> str:
    return f" elements = {{ {', '.join(elements)} }};" if elements else ""


def render(view: NodeView) -> str:
    merged, whole = defaultdict(list), Parts()
    for e in view.entries:
        p = parts(e, view.pod_cidrs)
        for name, elements in p.elements.items():
            merged[name] += elements
        whole.chains |= p.chains
        whole.sets |= p.sets
        whole.picks |= p.picks
    whole.picks |= _standing(view)
    for f in (4, 6):
        merged[f"hairpin{f}"] = [f"{ip} . {ip}" for ip in view.hairpin(f)]
        merged[f"clusterips{f}"] = view.cluster_ips(f)
    lines = [f"table {FAMILY} {TABLE} {{"]
    lines += [f"  {kind} {name} {{ {decl}{_elements(merged.get(name, []))} }}"
              for name, (kind, decl) in OBJECTS.items()]
    lines += [f"  set {name} {{ {decl} }}" for name, decl in sorted(whole.sets.items())]
    lines += [f"  chain {name} {{ {body}; }}" for name, body in sorted(whole.picks.items())]
    lines += [f"  chain {name} {{ {body}; }}" for name, body in sorted(whole.chains.items())]
    lines += [
        f"  chain services {{ {'; '.join(_services(view))}; }}",
        "  chain no-endpoints {",
        *[f"    {IP[f]} daddr . meta l4proto . th dport vmap @reject{f}" for f in (4, 6)],
        *[f"    meta nfproto {NFPROTO[f]} fib daddr type local meta l4proto . th dport vmap @rejectports{f}"
          for f in (4, 6)],
        # after DNAT: still to a cluster IP, it matched no Service port; to the range, no Service holds it
        *[f"    {IP[f]} daddr @clusterips{f} reject" for f in (4, 6)],
        *[f"    {IP[f]} daddr {cidr} drop" for f, cidr in sorted(view.service_cidrs.items())],
        "  }",
        "  chain reject-service { reject; }",
        f"  chain mark-masq {{ meta mark set meta mark | {MASQ_MARK:#x}; }}",
        "  chain prerouting { type nat hook prerouting priority dstnat; policy accept; jump services; }",
        "  chain output { type nat hook output priority -100; policy accept; jump services; }",
        "  chain postrouting { type nat hook postrouting priority srcnat; policy accept; "
        f"meta mark & {MASQ_MARK:#x} == {MASQ_MARK:#x} masquerade; "
        "ip saddr . ip daddr @hairpin4 masquerade; ip6 saddr . ip6 daddr @hairpin6 masquerade; }",
        # only a new flow can be to a Service without endpoints (kube-proxy checks `ct state new` too)
        *[f"  chain filter-{hook} {{ type filter hook {hook} priority filter; policy accept; "
          "ct state new jump no-endpoints; }"
          for hook in ("input", "forward", "output")],
        "}"]
    return "\n".join(lines) + "\n"


STANDING = 4  # endpoint counts whose shared chains every table holds, used or not


def _standing(view: NodeView) -> dict[str, str]:
    """The shared chains of 1 to STANDING endpoints, for every frontend kind and family: a Service with so few
    endpoints, new or changed, is a patch of elements rather than a reload of the table (nft 1.0.6 cannot add
    a chain's rule to a loaded table; see patch). 24 chains in a dual-stack table, measured to cost a patch a
    few milliseconds at most."""
    return dict(_pick(kind, family, n) for family in view.pod_cidrs for kind in KINDS
                for n in range(1, STANDING + 1))


def _picks(view: NodeView) -> set[str]:
    """The shared chains a rendering of view holds (what parts() would say of every entry, without the cost)."""
    out = set(_standing(view))
    for e in view.entries:
        if e.endpoints and not e.affinity:
            if e.cluster_ips and (n := len(e.cluster_targets())):
                out.add(f"pick-cl{e.family}-n{n}")
            for prefix, n in (("", len(e.external_targets())), ("sc", len(e.short_circuit_targets()))):
                if n:
                    out |= {f"pick-{prefix}ext{e.family}-n{n}"} if e.external_ips else set()
                    out |= {f"pick-{prefix}np{e.family}-n{n}"} if e.node_port else set()
    return out


def patch(old: NodeView, new: NodeView) -> str | None:
    """The nft commands that turn the table rendered from `old` into the one rendered from `new`, touching only
    what the changed entries put there: their elements, and their own chains and sets. Empty: no change. None
    when a Service needs a shared chain the table lacks (a new number of endpoints): nft 1.0.6 cannot add a rule
    that names the endpoint maps to a loaded table (it misreads their `typeof` back), so the table is reloaded.
    A shared chain that no Service uses any more is deleted, so the table stays what render(new) gives."""
    t = f"{FAMILY} {TABLE}"
    gone: dict[str, list[str]] = defaultdict(list)
    came: dict[str, list[str]] = defaultdict(list)
    before, after = Parts(), Parts()
    for was, now in changes(old, new):
        b = parts(was, old.pod_cidrs) if was else Parts()
        a = parts(now, new.pod_cidrs) if now else Parts()
        for name in b.elements.keys() | a.elements.keys():
            olds, news = b.elements.get(name, []), a.elements.get(name, [])
            old_set, new_set = set(olds), set(news)
            gone[name] += [x for x in olds if x not in new_set]
            came[name] += [x for x in news if x not in old_set]
        before.chains |= b.chains
        before.sets |= b.sets
        before.picks |= b.picks
        after.chains |= a.chains
        after.sets |= a.sets
        after.picks |= a.picks
    if old.pods != new.pods:
        for f in (4, 6):
            olds, news = set(old.hairpin(f)), set(new.hairpin(f))
            gone[f"hairpin{f}"] += [f"{ip} . {ip}" for ip in sorted(olds - news)]
            came[f"hairpin{f}"] += [f"{ip} . {ip}" for ip in sorted(news - olds)]
    if gone or came:  # an entry changed: the cluster IPs may have (a Service's several ports share them)
        for f in (4, 6):
            olds, news = set(old.cluster_ips(f)), set(new.cluster_ips(f))
            gone[f"clusterips{f}"] += sorted(olds - news)
            came[f"clusterips{f}"] += sorted(news - olds)
    if not after.picks.keys() <= before.picks.keys() and not after.picks.keys() <= _picks(old):
        return None
    chains = after.chains
    out = [f"add set {t} {n} {{ {d} }}" for n, d in after.sets.items() if n not in before.sets]
    out += [f"add chain {t} {n}" for n in chains if n not in before.chains]
    for name, elements in gone.items():
        if elements:
            keys = [x.split(" : ", 1)[0] for x in elements] if OBJECTS[name][0] == "map" else elements
            out.append(f"delete element {t} {name} {{ {', '.join(keys)} }}")
    for name, body in chains.items():
        if before.chains.get(name) != body:
            out += [f"flush chain {t} {name}", *[f"add rule {t} {name} {r}" for r in body.split("; ")]]
    out += [f"add element {t} {name} {{ {', '.join(elements)} }}" for name, elements in came.items() if elements]
    out += [f"delete chain {t} {n}" for n in before.chains if n not in after.chains]
    if unused := before.picks.keys() - after.picks.keys():  # a count of endpoints no Service has now
        out += [f"delete chain {t} {n}" for n in sorted(unused - _picks(new))]
    out += [f"delete set {t} {n}" for n in before.sets if n not in after.sets]
    return "\n".join(out) + "\n" if out else ""


__all__ = ["FAMILY", "TABLE", "patch", "render"]
