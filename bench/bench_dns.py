"""Cluster DNS: dnsperf from one pod through the kube-dns ClusterIP (10 s, 4 clients), for a cluster name and
for an external name looked up through the search path (ndots:5 turns one name into four queries: three
NXDOMAIN in the cluster domains, then the forwarded one); update-to-visible time for a new Service; memory of
a DNS server. All queries stay inside the lab."""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path

from common import ROOT, lab_up, quiet
from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

from testbed import lab, state
from testbed.pytest_plugin import Lab

SECONDS = 10
# a second Service to the DNS pods that prefers the client's node (the kube-dns one spreads, as upstream's does)
NEAR = ("{apiVersion: v1, kind: Service, metadata: {name: dns-near, namespace: kube-system}, spec: "
        "{trafficDistribution: PreferSameNode, selector: {k8s-app: kube-dns}, ports: [{port: 53, protocol: UDP}]}}\n")
SERVICE = "{apiVersion: v1, kind: Service, metadata: {name: %s}, spec: {selector: {app: web}, ports: [{port: 80}]}}\n"


def _dnsperf(bench: Lab, queries: list[str], server: str = "10.96.0.10") -> tuple[float, float, float]:
    """(queries per second, average latency ms, maximum latency ms)."""
    text = "\\n".join(queries)
    out = bench.exec("client", f"printf '{text}\\n' > /tmp/q && dnsperf -s {server} -d /tmp/q -l {SECONDS} -c 4 "
                               "-q 200").stdout
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))
    avg, _low, high = (float(x) for x in re.search(
        r"Average Latency \(s\):\s+([\d.]+) \(min ([\d.]+), max ([\d.]+)\)", out).groups())
    return qps, avg * 1000, high * 1000


def _p99_ms(bench: Lab, queries: list[str], rate: int | None = None, server: str = "10.96.0.10") -> float:
    """The 99th percentile of every query's latency, from dnsperf's per-query report (-v) of a separate 5 s run
    (the report costs the client time, so the QPS run above goes without it). Without a rate the servers are
    saturated and the figure is mostly the client's own queue (200 queries in flight); with one, it is the
    latency at that load."""
    text = "\\n".join(queries)
    limit = f"-Q {rate} " if rate else ""
    out = bench.exec("client", f"printf '{text}\\n' > /tmp/q && dnsperf -s {server} -d /tmp/q -l 5 -c 4 -q 200 "
                               f"{limit}"
                               "-v 2>/dev/null | awk '/^>/ {print $NF}' | sort -n | "
                               "awk '{a[NR]=$1} END {print a[int(NR*0.99)]}'").stdout
    return float(out.strip()) * 1000


@retry(retry=retry_if_result(lambda ok: not ok), stop=stop_after_delay(10), wait=wait_fixed(0.01))
def _visible(bench: Lab, name: str) -> bool:
    return bool(bench.exec("client", f"dig +short +time=1 +tries=1 {name}.default.svc.cluster.local").stdout.strip())


def run() -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        topo = Path(tmp) / "dns.yaml"
        topo.write_text((ROOT / "topologies" / "default.yaml").read_text().replace("name: default", "name: bench-dns")
                        .replace("manifests/web.yaml", str(ROOT / "topologies" / "manifests" / "web.yaml")))
        with lab_up(topo) as ctx:
            bench = Lab(ctx.lab)
            manifest = Path(tmp) / "svc.yaml"
            manifest.write_text(SERVICE % "web")
            lab.apply(ctx.lab, manifest, say=quiet)
            out["dns_cluster_qps"], out["dns_cluster_avg_ms"], out["dns_cluster_max_ms"] = _dnsperf(
                bench, ["web.default.svc.cluster.local A"])
            out["dns_cluster_p99_ms"] = _p99_ms(bench, ["web.default.svc.cluster.local A"])
            out["dns_cluster_p99_at_10k_qps_ms"] = _p99_ms(bench, ["web.default.svc.cluster.local A"], 10000)
            manifest.write_text(NEAR)
            lab.apply(ctx.lab, manifest, say=quiet)
            near = next(s for s in Lab(ctx.lab).plan.services if s.name == "dns-near").cluster_ips[0]
            out["dns_cluster_qps_prefer_same_node"], _, _ = _dnsperf(bench, ["web.default.svc.cluster.local A"], near)
            search = [f"www.example.com.{d} A" for d in ("default.svc.cluster.local", "svc.cluster.local",
                                                          "cluster.local")] + ["www.example.com A"]
            qps, out["dns_external_avg_ms"], out["dns_external_max_ms"] = _dnsperf(bench, search)
            out["dns_external_names_per_s_as_the_client_sees"] = qps / len(search)
            manifest.write_text(SERVICE % "late")
            start = time.perf_counter()
            lab.apply(ctx.lab, manifest, say=quiet)
            _visible(bench, "late")
            out["dns_update_to_visible_s"] = time.perf_counter() - start
            server = bench.pods("kube-system", **{"k8s-app": "kube-dns"})[0]
            node = ctx.machine(server.node).container
            rss = node.exec_run(["sh", "-c", "ps -C named -o rss= | head -1"]).output.decode().strip()
            out["dns_server_rss_mib"] = int(rss) / 1024
            out |= _readiness(ctx, bench, server)
    out |= _node_cache()
    return out


def _node_cache() -> dict[str, float]:
    """The same queries from a pod to NodeLocal DNSCache on its own node (tests/e2e/nodelocal.yaml)."""
    from testbed.model.topology import NODE_LOCAL_DNS

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        topo = Path(tmp) / "cache.yaml"
        topo.write_text((ROOT / "tests" / "e2e" / "nodelocal.yaml").read_text()
                        .replace("name: e2e-nodelocal", "name: bench-nodelocal"))
        with lab_up(topo) as ctx:
            bench = Lab(ctx.lab)
            query = ["web.default.svc.cluster.local A"]
            out["dns_node_cache_qps"], _, _ = _dnsperf(bench, query, NODE_LOCAL_DNS)
            out["dns_node_cache_p99_at_10k_qps_ms"] = _p99_ms(bench, query, 10000, NODE_LOCAL_DNS)
            out["dns_without_cache_same_lab_qps"], _, _ = _dnsperf(bench, query, ctx.plan.topology.dns_ip())
    return out


@retry(retry=retry_if_result(lambda st: st is None), stop=stop_after_delay(15), wait=wait_fixed(0.01))
def _recorded(name: str, pod: str, ready: bool) -> state.LabState | None:
    st = state.load(name)
    return st if st and st.readiness.get(pod) is ready else None


def _readiness(ctx, bench: Lab, server) -> dict[str, float]:
    """A DNS server stopped (SIGSTOP): how long until every node stops sending it queries (probe period 1 s,
    probe timeout 1 s, then the controller's sync), and of that, from the agent's observation to the synced
    rules; then the same for its return (SIGCONT)."""
    node = ctx.machine(server.node).container
    pid = node.exec_run(["sh", "-c", f"ip netns pids {server.netns} | xargs -r ps -o pid=,comm= -p | "
                                     "awk '$2 == \"named\" {print $1}'"]).output.decode().split()
    seen = state.run_dir(ctx.lab) / server.node / "readiness.json"
    out = {}
    for signal_name, ready, label in (("STOP", False, "unready"), ("CONT", True, "ready")):
        start = time.time()
        node.exec_run(["kill", f"-{signal_name}", *pid])
        _recorded(ctx.lab, server.key, ready)
        synced = (state.lab_dir(ctx.lab) / "state.json").stat().st_mtime
        out[f"readiness_{label}_to_endpoints_synced_s"] = synced - start
        out[f"readiness_{label}_observed_to_synced_s"] = synced - seen.stat().st_mtime
    return out


if __name__ == "__main__":
    print(run())
