"""kube-proxy: rule-sync time on one node in each mode (full syncs of 1,000 and 5,000 Services x 10 endpoints, and
one endpoint changed at 10,000), through the node's agent as `up` and `apply` do it; ClusterIP throughput
against the pod IP; 10,000 short connections through a ClusterIP, 50 at a time; and apply-to-effect for a
new Service. Synthetic Services are rendered from a plan-shaped view; traffic stays inside the lab."""

from __future__ import annotations

import json
import tempfile
import textwrap
import time
from pathlib import Path

from bench_throughput import _measure
from common import HERE, lab_up, quiet, timed

from testbed import lab
from testbed.installers.kube_proxy import ipt, nft, sync
from testbed.installers.kube_proxy.view import Entry, NodeView
from testbed.pytest_plugin import Lab
from testbed.runtime import agent, podexec

ENDPOINTS = 10


def synthetic(services: int, changed: bool = False) -> NodeView:
    view = NodeView("node1", {4: "10.244.0.0/16"}, service_cidrs={4: "10.96.0.0/12"})
    local: set[str] = set()
    for i in range(services):
        eps = [(f"10.244.{(i * ENDPOINTS + j) // 250 % 250}.{(i * ENDPOINTS + j) % 250 + 2}", 8080)
               for j in range(ENDPOINTS)]
        if changed and i == services // 2:
            eps[0] = ("10.244.255.254", 8080)
        ip = f"10.96.{i // 250}.{i % 250 + 2}"
        here = eps if i < 11 else []  # a node holds 110 pods at most, as the kubelet's default
        view.entries.append(Entry(f"{i:012x}", f"default/s{i}", "http", 4, "tcp", 80, [ip], [], None, eps, here))
        local |= {addr for addr, _ in here}
    view.pods = sorted(local)
    return view


def _sync_figures(run_dir: Path) -> dict[str, float]:
    """Through the installer's own sync functions: a whole table first, then only what changed. One mode's rules
    at a time, as on a node."""
    out: dict[str, float] = {}

    def clear() -> None:
        agent.call(run_dir, "rules", family=nft.FAMILY, table=nft.TABLE, text=None)
        agent.call(run_dir, "iptables", v4=ipt.empty())

    for n in (1000, 5000):
        view = synthetic(n)
        clear()
        out[f"nft_full_sync_{n}x10_s"], _ = timed(lambda v=view: sync.nftables(run_dir, v, None))
        clear()
        out[f"iptables_full_sync_{n}x10_s"], _ = timed(lambda v=view: sync.iptables(run_dir, v, None, False))
    big, changed = synthetic(10000), synthetic(10000, changed=True)
    clear()
    sync.nftables(run_dir, big, None)
    out["nft_one_endpoint_change_at_10k_s"], _ = timed(lambda: sync.nftables(run_dir, changed, big))
    clear()
    sync.iptables(run_dir, big, None, False)
    out["iptables_one_endpoint_change_at_10k_s"], _ = timed(lambda: sync.iptables(run_dir, changed, big, False))
    clear()
    return out


CONNECTIONS = textwrap.dedent("""
    import asyncio, sys, time
    host, total, width = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    failures = 0
    async def one():
        global failures
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, 80), 5)
            w.write(b"GET /hostname HTTP/1.0\\r\\n\\r\\n")
            await w.drain()
            if not (await asyncio.wait_for(r.read(), 5)).startswith(b"HTTP/1.1 200"):
                failures += 1
            w.close()
        except Exception:
            failures += 1
    async def worker(n):
        for _ in range(n):
            await one()
    async def main():
        start = time.monotonic()
        await asyncio.gather(*(worker(total // width) for _ in range(width)))
        print(failures, total / (time.monotonic() - start))
    asyncio.run(main())
""")

SERVICE = """apiVersion: v1
kind: Service
metadata: {name: %s}
spec:
  selector: {app: server}
  ports: [{name: http, port: 80, targetPort: 8080}, {name: iperf, port: 5201}]
"""


def run() -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        topo = Path(tmp) / "proxy.yaml"
        source = (HERE / "topology-throughput.yaml").read_text().replace("name: bench-tput", "name: bench-proxy")
        source = source.replace("metadata: {name: server}", "metadata: {name: server, labels: {app: server}}")
        source = source.replace("{name: c}]}}\n  - {apiVersion: v1, kind: Pod, metadata: {name: client}",
                                "{name: c, ports: [{containerPort: 8080}]}]}}\n"
                                "  - {apiVersion: v1, kind: Pod, metadata: {name: client}")
        topo.write_text(source)
        with lab_up(topo) as ctx:
            out |= _sync_figures(ctx.run_dir("node1"))
            manifest = Path(tmp) / "svc.yaml"
            manifest.write_text(SERVICE % "server")
            lab.apply(ctx.lab, manifest, say=quiet)
            bench = Lab(ctx.lab)
            svc_ip = next(s for s in bench.plan.services if s.name == "server").cluster_ips[0]
            server, client = bench.pod("server"), bench.pod("client")
            c_server, c_client = ctx.machine(server.node).container, ctx.machine(client.node).container
            direct = _measure(c_server, podexec.wrap(server, []), c_client, podexec.wrap(client, []), server.ipv4)
            through = _measure(c_server, podexec.wrap(server, []), c_client, podexec.wrap(client, []), svc_ip)
            out["pod_ip_gbps"], out["cluster_ip_gbps"] = direct, through
            out["cluster_ip_vs_pod_ip_ratio"] = through / direct
            result = bench.exec("client", ["python3", "-c", CONNECTIONS, svc_ip, "10000", "50"])
            failures, rate = result.stdout.split()
            out["connections_10k_failures"], out["connections_per_s"] = float(failures), float(rate)

            manifest.write_text(SERVICE % "late")
            start = time.perf_counter()
            lab.apply(ctx.lab, manifest, say=quiet)
            late_ip = next(s for s in Lab(ctx.lab).plan.services if s.name == "late").cluster_ips[0]
            for node in ctx.plan.nodes:
                code = ctx.machine(node.name).container.exec_run(
                    ["curl", "-s", "--max-time", "2", f"http://{late_ip}/hostname"]).exit_code
                assert code == 0, json.dumps({"node": node.name, "code": code})
            out["apply_to_effect_all_nodes_s"] = time.perf_counter() - start
    return out


if __name__ == "__main__":
    print(run())
