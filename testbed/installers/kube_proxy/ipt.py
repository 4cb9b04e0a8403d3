"""kube-proxy's iptables mode, rendered: the nat and filter tables of a node as one `iptables-restore` input per
IP family, in kube-proxy's shape (KUBE-SERVICES → KUBE-SVC-* or KUBE-EXT-* with `statistic` probabilities,
KUBE-NODEPORTS, KUBE-MARK-MASQ and KUBE-POSTROUTING, REJECT for Services without endpoints). Nothing else in a
node uses these tables, so the first sync replaces them whole.

One difference from kube-proxy, measured: iptables-restore (nft backend) pays per chain as much as per rule,
and a KUBE-SEP chain per endpoint made 5,000 Services x 10 endpoints take 7.5 s instead of 1.9 s. So a
Service's chain DNATs to its endpoints itself, and the hairpin rule that each KUBE-SEP chain held is one rule
per local pod in KUBE-HAIRPIN, after DNAT. Only Services with ClientIP affinity keep a chain per endpoint
(their `recent` lists live there).

Each entry renders to its own lines (`parts`); a later sync (`patch`) is a `--noflush` restore of the chains
the changed entries own, and of the shared chains only when their lines changed, as kube-proxy's partial
syncs are."""

from __future__ import annotations

from dataclasses import dataclass, field

from testbed.installers.kube_proxy.view import MASQ_MARK, Entry, NodeView, changes
from testbed.network.bridge import BRIDGE

TOP = ("nat KUBE-SERVICES", "nat KUBE-NODEPORTS", "filter KUBE-SERVICES", "filter KUBE-NODEPORTS")
PARTIAL_SHARE = 10  # changes to more than one entry in this many go as a whole restore: it is faster then


@dataclass
class Parts:
    top: dict[str, list[str]] = field(default_factory=dict)  # "table chain" → this entry's lines there
    chains: dict[str, list[str]] = field(default_factory=dict)  # its own nat chains → their rules


def _target(family: int, ip: str, port: int) -> str:
    return f"{ip}:{port}" if family == 4 else f"[{ip}]:{port}"


def _chain(prefix: str, e: Entry, suffix: str = "") -> str:
    return f"KUBE-{prefix}-{e.id.upper()}{suffix}"[:28]


def _dispatch(e: Entry, chain: str, targets: list[tuple[str, int]], out: Parts) -> None:
    rules = out.chains[chain]
    picks = []
    for i, (addr, port) in enumerate(targets):
        dnat = f"-p {e.protocol} -j DNAT --to-destination {_target(e.family, addr, port)}"
        if not e.affinity:
            picks.append(dnat)
            continue
        sep = f"{chain[:22]}-E{i}"
        out.chains[sep] = [f"-A {sep} -m recent --name {sep} --set {dnat}"]
        rules.append(f"-A {chain} -m recent --name {sep} --rcheck --seconds {e.affinity} --reap -j {sep}")
        picks.append(f"-j {sep}")
    for i, pick in enumerate(picks):
        left = len(picks) - i
        chance = "" if left == 1 else f"-m statistic --mode random --probability {1 / left:.10f} "
        rules.append(f"-A {chain} {chance}{pick}")


def _short_circuit(e: Entry, ext: str, local_if: str, out: Parts) -> list[str]:
    """kube-proxy's first rules in a Local Service's KUBE-EXT chain: this node's pods (by the interface they
    come in on), and the node itself (masqueraded: its source is the frontend's own address), go to every
    ready endpoint, as cluster traffic would."""
    chain = _chain("SVC", e)
    if e.internal_local:  # the Service's chain holds only this node's endpoints: one with all of them
        chain = _chain("SCX", e)
        out.chains[chain] = []
        _dispatch(e, chain, e.short_circuit_targets(), out)
    return [f"-A {ext} -i {local_if} -j {chain}", f"-A {ext} -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ",
            f"-A {ext} -m addrtype --src-type LOCAL -j {chain}"]


def parts(e: Entry, local_if: str = BRIDGE) -> Parts:
    out, proto = Parts(), e.protocol
    nat, nodeports = out.top.setdefault("nat KUBE-SERVICES", []), out.top.setdefault("nat KUBE-NODEPORTS", [])
    filt, filt_ports = out.top.setdefault("filter KUBE-SERVICES", []), out.top.setdefault("filter KUBE-NODEPORTS", [])
    if not e.endpoints:
        filt += [f"-A KUBE-SERVICES -d {ip} -p {proto} --dport {e.port} -j REJECT"
                 for ip in e.cluster_ips + e.external_ips]
        if e.node_port:
            filt_ports.append(f"-A KUBE-NODEPORTS -m addrtype --dst-type LOCAL -p {proto} --dport {e.node_port} "
                              "-j REJECT")
        return out
    if e.cluster_ips and not e.cluster_targets():
        # internalTrafficPolicy Local and no endpoint here: dropped, in the filter table
        filt += [f"-A KUBE-SERVICES -d {ip} -p {proto} --dport {e.port} -j DROP" for ip in e.cluster_ips]
    elif e.cluster_ips:
        svc = _chain("SVC", e)
        nat += [f"-A KUBE-SERVICES -d {ip} -p {proto} --dport {e.port} -j {svc}" for ip in e.cluster_ips]
        out.chains[svc] = []
        _dispatch(e, svc, e.cluster_targets(), out)
    if not (e.external_ips or e.node_port):
        return out
    if not e.external_targets():
        # Local policy and no endpoint here: what the KUBE-EXT chain did not short-circuit (traffic from outside
        # the cluster) is dropped, in the filter table, after DNAT (the nat table may not drop)
        filt += [f"-A KUBE-SERVICES -d {ip} -p {proto} --dport {e.port} -j DROP" for ip in e.external_ips]
        if e.node_port:
            filt_ports.append(f"-A KUBE-NODEPORTS -m addrtype --dst-type LOCAL -p {proto} --dport {e.node_port} "
                              "-j DROP")
    ext = _chain("EXT", e)
    nat += [f"-A KUBE-SERVICES -d {ip} -p {proto} --dport {e.port} -j {ext}" for ip in e.external_ips]
    if e.node_port:
        nodeports.append(f"-A KUBE-NODEPORTS -p {proto} --dport {e.node_port} -j {ext}")
    out.chains[ext] = _short_circuit(e, ext, local_if, out) if e.external_local else [f"-A {ext} -j KUBE-MARK-MASQ"]
    if e.external_targets():
        _dispatch(e, ext, e.external_targets(), out)
    return out


def _hairpin(view: NodeView, family: int) -> list[str]:
    """A pod that reaches a Service and lands on itself is masqueraded (kube-proxy: the KUBE-SEP chain's -s)."""
    return [f"-A KUBE-HAIRPIN -s {ip} -d {ip} -j MASQUERADE" for ip in view.hairpin(family)]


def _tops(view: NodeView, family: int, chains: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """The shared chains' lines (and, given `chains`, every entry's own chains there)."""
    tops: dict[str, list[str]] = {name: [] for name in TOP}
    if family in view.pod_cidrs and family in view.service_cidrs:
        # traffic to a cluster IP from outside the pods is masqueraded: one rule for the service range, where
        # kube-proxy has one per Service (measured: 5,000 rules are a tenth of a 5,000-Service sync)
        tops["nat KUBE-SERVICES"].append(f"-A KUBE-SERVICES ! -s {view.pod_cidrs[family]} "
                                         f"-d {view.service_cidrs[family]} -j KUBE-MARK-MASQ")
    for e in view.entries:
        if e.family == family:
            p = parts(e, view.local_if)
            for name, lines in p.top.items():
                tops[name] += lines
            if chains is not None:
                chains |= p.chains
    tops["nat KUBE-SERVICES"].append("-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS")
    return tops


def render(view: NodeView, family: int) -> str:
    chains: dict[str, list[str]] = {}
    tops = _tops(view, family, chains)
    nat = ["-A PREROUTING -j KUBE-SERVICES", "-A OUTPUT -j KUBE-SERVICES", "-A POSTROUTING -j KUBE-POSTROUTING",
           f"-A KUBE-MARK-MASQ -j MARK --or-mark {MASQ_MARK:#x}",
           f"-A KUBE-POSTROUTING -m mark --mark {MASQ_MARK:#x}/{MASQ_MARK:#x} -j MASQUERADE",
           "-A KUBE-POSTROUTING -m conntrack --ctstate DNAT -j KUBE-HAIRPIN", *_hairpin(view, family),
           *tops["nat KUBE-SERVICES"], *tops["nat KUBE-NODEPORTS"], *[r for rules in chains.values() for r in rules]]
    filt = ["-A INPUT -j KUBE-SERVICES", "-A FORWARD -j KUBE-SERVICES", "-A OUTPUT -j KUBE-SERVICES",
            "-A INPUT -j KUBE-NODEPORTS", *tops["filter KUBE-SERVICES"], *tops["filter KUBE-NODEPORTS"]]
    own = ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ", "KUBE-HAIRPIN", *chains]
    lines = ["*nat", *[f":{c} ACCEPT [0:0]" for c in ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")],
             *[f":{c} - [0:0]" for c in own], *nat, "COMMIT",
             "*filter", *[f":{c} ACCEPT [0:0]" for c in ("INPUT", "FORWARD", "OUTPUT")],
             ":KUBE-SERVICES - [0:0]", ":KUBE-NODEPORTS - [0:0]", *filt, "COMMIT"]
    return "\n".join(lines) + "\n"


def patch(old: NodeView, new: NodeView, family: int) -> str | None:
    """A `--noflush` restore turning the tables rendered from `old` into those from `new`: the chains the
    changed entries own (declaring a chain flushes it), the shared ones whose lines changed, `-X` for chains
    gone. None when so much changed that a whole restore is quicker. Empty: no change."""
    pairs = [(b, a) for b, a in changes(old, new) if (b or a).family == family]  # type: ignore[union-attr]
    if len(pairs) * PARTIAL_SHARE > max(len(new.entries), 100):
        return None
    before, after, tops_changed = Parts(), Parts(), False
    for was, now in pairs:
        b = parts(was, old.local_if) if was else Parts()
        a = parts(now, new.local_if) if now else Parts()
        tops_changed |= {k: v for k, v in b.top.items() if v} != {k: v for k, v in a.top.items() if v}
        before.chains |= b.chains
        after.chains |= a.chains
    nat_chains = {name: rules for name, rules in after.chains.items() if before.chains.get(name) != rules}
    if old.hairpin(family) != new.hairpin(family):
        nat_chains["KUBE-HAIRPIN"] = _hairpin(new, family)
    filt_chains: dict[str, list[str]] = {}
    if tops_changed:
        for name, lines in _tops(new, family).items():
            table, chain = name.split()
            (nat_chains if table == "nat" else filt_chains)[chain] = lines
    gone = [name for name in before.chains if name not in after.chains]
    out = []
    for table, chains, drop in (("nat", nat_chains, gone), ("filter", filt_chains, [])):
        if chains or drop:
            # a chain is deleted empty: declaring it flushes it
            out += [f"*{table}", *[f":{c} - [0:0]" for c in [*chains, *drop]],
                    *[r for rules in chains.values() for r in rules], *[f"-X {c}" for c in drop], "COMMIT"]
    return "\n".join(out) + "\n" if out else ""


def empty() -> str:
    """Both tables as a node starts: what uninstalling the iptables mode restores."""
    return ("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
            "COMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n")
