"""kube-proxy's iptables mode, rendered: the nat and filter tables of a node as one `iptables-restore` input per
IP family, in kube-proxy's shape (KUBE-SERVICES → KUBE-SVC-* → KUBE-SEP-* with `statistic` probabilities,
KUBE-NODEPORTS, KUBE-MARK-MASQ and KUBE-POSTROUTING, REJECT for Services without endpoints). Nothing else in
a node uses iptables, so the tables are replaced whole, in one transaction each."""

from __future__ import annotations

from testbed.installers.kube_proxy.view import MASQ_MARK, Entry, NodeView


def _target(family: int, ip: str, port: int) -> str:
    return f"{ip}:{port}" if family == 4 else f"[{ip}]:{port}"


def _chain(prefix: str, e: Entry, suffix: str = "") -> str:
    return f"KUBE-{prefix}-{e.id.upper()}{suffix}"[:28]


def _dispatch(e: Entry, chain: str, targets: list[tuple[str, int]], chains: list[str],
              rules: list[str]) -> None:
    seps = []
    for i, (addr, port) in enumerate(targets):
        sep = f"{chain[:22]}-E{i}"
        chains.append(sep)
        seps.append(sep)
        rules.append(f"-A {sep} -s {addr} -j KUBE-MARK-MASQ")  # hairpin
        recent = f"-m recent --name {sep} --set " if e.affinity else ""
        rules.append(f"-A {sep} -p {e.protocol} {recent}-j DNAT --to-destination {_target(e.family, addr, port)}")
    if e.affinity:
        rules += [f"-A {chain} -m recent --name {sep} --rcheck --seconds {e.affinity} --reap -j {sep}"
                  for sep in seps]
    for i, sep in enumerate(seps):
        left = len(seps) - i
        chance = "" if left == 1 else f"-m statistic --mode random --probability {1 / left:.10f} "
        rules.append(f"-A {chain} {chance}-j {sep}")


def render(view: NodeView, family: int) -> str:
    nat_chains = ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"]
    nat = ["-A PREROUTING -j KUBE-SERVICES", "-A OUTPUT -j KUBE-SERVICES", "-A POSTROUTING -j KUBE-POSTROUTING",
           f"-A KUBE-MARK-MASQ -j MARK --or-mark {MASQ_MARK:#x}",
           f"-A KUBE-POSTROUTING -m mark --mark {MASQ_MARK:#x}/{MASQ_MARK:#x} -j MASQUERADE"]
    filt = ["-A INPUT -j KUBE-SERVICES", "-A FORWARD -j KUBE-SERVICES", "-A OUTPUT -j KUBE-SERVICES",
            "-A INPUT -j KUBE-NODEPORTS"]
    node_port_rules = []
    for e in (x for x in view.entries if x.family == family):
        proto = e.protocol
        if not e.endpoints:
            for ip in e.cluster_ips + e.external_ips:
                filt.append(f"-A KUBE-SERVICES -d {ip} -p {proto} --dport {e.port} -j REJECT")
            if e.node_port:
                filt.append(f"-A KUBE-NODEPORTS -m addrtype --dst-type LOCAL -p {proto} --dport {e.node_port} "
                            "-j REJECT")
            continue
        if e.cluster_ips and not e.cluster_targets():
            # internalTrafficPolicy Local and no endpoint here: dropped, in the filter table
            filt += [f"-A KUBE-SERVICES -d {ip} -p {proto} --dport {e.port} -j DROP" for ip in e.cluster_ips]
        elif e.cluster_ips:
            svc = _chain("SVC", e)
            nat_chains.append(svc)
            for ip in e.cluster_ips:
                nat.append(f"-A KUBE-SERVICES -d {ip} -p {proto} --dport {e.port} -j {svc}")
            if family in view.pod_cidrs:
                nat.append(f"-A {svc} ! -s {view.pod_cidrs[family]} -j KUBE-MARK-MASQ")
            _dispatch(e, svc, e.cluster_targets(), nat_chains, nat)
        if (e.external_ips or e.node_port) and not e.external_targets():
            # Local policy and no endpoint here: dropped, in the filter table (the nat table may not drop)
            filt += [f"-A KUBE-SERVICES -d {ip} -p {proto} --dport {e.port} -j DROP" for ip in e.external_ips]
            if e.node_port:
                filt.append(f"-A KUBE-NODEPORTS -m addrtype --dst-type LOCAL -p {proto} --dport {e.node_port} "
                            "-j DROP")
        elif e.external_ips or e.node_port:
            ext = _chain("EXT", e)
            nat_chains.append(ext)
            for ip in e.external_ips:
                nat.append(f"-A KUBE-SERVICES -d {ip} -p {proto} --dport {e.port} -j {ext}")
            if e.node_port:
                node_port_rules.append(f"-A KUBE-NODEPORTS -p {proto} --dport {e.node_port} -j {ext}")
            if not e.external_local:
                nat.append(f"-A {ext} -j KUBE-MARK-MASQ")
            _dispatch(e, ext, e.external_targets(), nat_chains, nat)
    nat += [*node_port_rules, "-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"]
    builtin = ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]
    lines = ["*nat", *[f":{c} ACCEPT [0:0]" for c in builtin], *[f":{c} - [0:0]" for c in dict.fromkeys(nat_chains)],
             *nat, "COMMIT", "*filter", *[f":{c} ACCEPT [0:0]" for c in ("INPUT", "FORWARD", "OUTPUT")],
             ":KUBE-SERVICES - [0:0]", ":KUBE-NODEPORTS - [0:0]", *filt, "COMMIT"]
    return "\n".join(lines) + "\n"


def empty() -> str:
    """Both tables as a node starts: what uninstalling the iptables mode restores."""
    return ("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
            "COMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n")
