"""`testbed probe --matrix`: every pair among the chosen pods, on the given ports and protocols, probed from
inside each source pod (all its probes in parallel, one exec per source, the sources in parallel), beside what
the policy model expects, printed as the upstream e2e suite prints its truth tables (rows from, columns to,
`.` allowed, `X` blocked; a `*` marks a cell where the datapath and the model disagree).

A probe is retried briefly before a block is declared, as the upstream suite does."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from testbed import lab
from testbed.errors import InvalidInput, Problem
from testbed.plan.cluster import Plan, PodPlan
from testbed.policy.evaluate import decide
from testbed.runtime import probing


@dataclass
class Cell:
    source: str  # ns/pod
    destination: str
    port: int
    protocol: str  # tcp | udp | sctp
    target: str  # what was dialled: the pod IP, a ClusterIP or a name
    observed: bool | None  # None: not probed (no Service for this port, via service/dns)
    expected: bool
    result: str = ""

    @property
    def agrees(self) -> bool:
        return self.observed is None or self.observed == self.expected


def choose(plan: Plan, namespaces: list[str], pods: list[str]) -> list[PodPlan]:
    """The pods named, or those of the namespaces given, or every pod outside kube-system."""
    if pods:
        keys = {p if "/" in p else f"default/{p}" for p in pods}
        chosen = [p for p in plan.pods if p.key in keys]
        missing = keys - {p.key for p in chosen}
        if missing:
            raise InvalidInput([Problem("testbed probe", "--pod", f"no pod {', '.join(sorted(missing))}")])
        return chosen
    if namespaces:
        return [p for p in plan.pods if p.namespace in namespaces]
    return [p for p in plan.pods if p.namespace != "kube-system"]


def _dial(plan: Plan, dst: PodPlan, port: int, protocol: str, via: str) -> tuple[str, int] | None:
    """Where a client dials to reach dst's port: the pod IP, or a Service's cluster IP or DNS name."""
    if via == "pod":
        return dst.ipv4, port
    zone = plan.topology.networking.clusterDomain
    for svc in plan.services:
        if not svc.cluster_ips or svc.namespace != dst.namespace:
            continue
        for sp in svc.ports:
            if sp.protocol.lower() != protocol:
                continue
            if any(e.pod == dst.key and e.ports.get(sp.key) == port for e in svc.endpoints):
                ip4 = next((ip for ip in svc.cluster_ips if ":" not in ip), None)
                if ip4:
                    # a fully qualified name (trailing dot): one query, not one per search domain
                    return (ip4 if via == "service" else f"{svc.name}.{svc.namespace}.svc.{zone}."), sp.port
    return None


def _serves(pod: PodPlan, port: int, protocol: str) -> bool:
    return bool(pod.processes) or any(p.port == port and p.protocol.lower() == protocol for p in pod.ports)


def expected(plan: Plan, src: PodPlan, dst: PodPlan, port: int, protocol: str, via: str) -> bool:
    """The model's answer: the policies allow the flow, the pod serves the port, and (via dns) the source may
    reach a cluster DNS pod to resolve the name."""
    ok = _serves(dst, port, protocol) and decide(plan.policies, plan.namespaces, src, src.ipv4, dst, dst.ipv4,
                                                 port, protocol).allowed
    if ok and via == "dns":
        servers = [p for p in plan.pods if p.namespace == "kube-system" and p.labels.get("k8s-app") == "kube-dns"]
        ok = any(decide(plan.policies, plan.namespaces, src, src.ipv4, d, d.ipv4, 53, "udp").allowed
                 for d in servers)
    return ok


def _udp_base() -> int:
    """UDP probes bind source ports from a window that moves 200 ports a second, so within conntrack's UDP
    timeout (120 s) no probe repeats an earlier probe's flow: an entry left by a probe that was allowed before a
    policy changed would otherwise carry the new probe through (policy judges new flows)."""
    return int(time.time() * 200) % 28000


def run(name: str, namespaces: list[str], pods: list[str], ports: list[int], protocols: list[str], via: str,
        tries: int = 3, timeout: float = 0.6) -> list[Cell]:
    _, plan = lab.current_plan(name)
    chosen = choose(plan, namespaces, pods)
    cells: dict[str, list[Cell]] = {}
    for src in chosen:
        for dst in chosen:
            for proto in protocols:
                for port in ports:
                    dial = _dial(plan, dst, port, proto, via)
                    cells.setdefault(src.key, []).append(Cell(
                        src.key, dst.key, port, proto, f"{dial[0]}:{dial[1]}" if dial else "", None,
                        expected(plan, src, dst, port, proto, via)))

    def one(src: PodPlan) -> None:
        mine = [c for c in cells.get(src.key, []) if c.target]
        targets = [(c.target.rpartition(":")[0], int(c.target.rpartition(":")[2]), c.protocol) for c in mine]
        got = probing.connect_many(plan, src, targets, tries, timeout, _udp_base())
        for cell, outcome in zip(mine, got, strict=True):
            cell.result, cell.observed = outcome, outcome == "connected"

    with ThreadPoolExecutor(max(1, min(16, len(chosen)))) as pool:
        list(pool.map(one, chosen))
    return [c for src in chosen for c in cells.get(src.key, [])]


def as_json(cells: list[Cell]) -> list[dict[str, Any]]:
    out = []
    for c in cells:
        d = asdict(c)
        d["from"], d["to"], d["agrees"] = d.pop("source"), d.pop("destination"), c.agrees
        out.append(d)
    return out


def tables(cells: list[Cell]) -> str:
    """One truth table per protocol and port."""
    blocks = []
    for proto, port in dict.fromkeys((c.protocol, c.port) for c in cells):
        mine = [c for c in cells if c.protocol == proto and c.port == port]
        names = list(dict.fromkeys(c.destination for c in mine))
        rows = ["\t".join(["-", *names])]
        for src in dict.fromkeys(c.source for c in mine):
            row = {c.destination: c for c in mine if c.source == src}
            rows.append("\t".join([src, *[_mark(row[n]) for n in names]]))
        blocks.append(f"{proto}/{port}\n" + "\n".join(rows))
    return "\n\n".join(blocks) + "\n"


def _mark(c: Cell) -> str:
    if c.observed is None:
        return "-"
    return ("." if c.observed else "X") + ("" if c.agrees else "*")


HEADER = re.compile(r"^(tcp|udp|sctp)/(\d+)$")


def parse_expect(text: str, source: str) -> dict[tuple[str, int] | None, dict[tuple[str, str], bool]]:
    """An expected matrix, in the printed format: blocks headed `tcp/80`, or one table for every port (no
    header). Cells are `.` or `X` (a trailing `*` is ignored)."""
    out: dict[tuple[str, int] | None, dict[tuple[str, str], bool]] = {}
    key: tuple[str, int] | None = None
    columns: list[str] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or line.lstrip().startswith("#"):
            continue
        if m := HEADER.match(line.strip()):
            key, columns = (m.group(1), int(m.group(2))), None
            continue
        if columns is None:
            columns = words[1:] if words[0] == "-" else words
            continue
        if len(words) != len(columns) + 1 or any(w.rstrip("*") not in (".", "X", "-") for w in words[1:]):
            raise InvalidInput([Problem(source, f"line {number}", "a row is the source pod and one of '.', 'X' "
                                                                  f"or '-' per column ({len(columns)} columns)",
                                        number)])
        for col, w in zip(columns, words[1:], strict=True):
            if w.rstrip("*") != "-":
                out.setdefault(key, {})[(words[0], col)] = w.rstrip("*") == "."
    return out


def differences(cells: list[Cell], expect: dict[tuple[str, int] | None, dict[tuple[str, str], bool]]) -> list[str]:
    diffs = []
    for c in cells:
        table = expect.get((c.protocol, c.port), expect.get(None, {}))
        want = table.get((c.source, c.destination))
        if want is not None and c.observed is not None and want != c.observed:
            diffs.append(f"{c.protocol}/{c.port} {c.source} → {c.destination}: expected "
                         f"{'allowed' if want else 'blocked'}, observed {'allowed' if c.observed else 'blocked'} "
                         f"({c.result})")
    return diffs
