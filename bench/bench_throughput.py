"""Cross-node pod→pod TCP throughput (iperf3, one stream, 5 s per run) in each network mode (vxlan, host-gw,
bgp: one lab switched between them with `up`), against one raw veth pair between two namespaces (the ceiling
for a single hop). All traffic stays inside the lab's own namespaces."""

from __future__ import annotations

import json
import tempfile
import textwrap
from pathlib import Path

from common import HERE, lab_up, quiet
from tenacity import retry, retry_if_result, stop_after_attempt, wait_fixed

from testbed import lab
from testbed.runtime import docker as rt
from testbed.runtime import podexec

SECONDS = 5
ROUNDS = 2

RAW_PAIR = textwrap.dedent("""
    from pyroute2 import IPRoute
    from testbed.agent import nsutil
    for name in ("rawa", "rawb"):
        nsutil.create_named("/run/netns/" + name)
    with nsutil.entered("/run/netns/rawa"), IPRoute() as ipr:
        fd = open("/run/netns/rawb")
        ipr.link("add", ifname="r0", kind="veth", mtu={mtu}, peer={{"ifname": "r1", "net_ns_fd": fd.fileno(),
                 "mtu": {mtu}}})
        ipr.addr("add", index=ipr.link_lookup(ifname="r0")[0], address="192.0.2.1", prefixlen=30)
        ipr.link("set", index=ipr.link_lookup(ifname="r0")[0], state="up")
    with nsutil.entered("/run/netns/rawb"), IPRoute() as ipr:
        ipr.addr("add", index=ipr.link_lookup(ifname="r1")[0], address="192.0.2.2", prefixlen=30)
        ipr.link("set", index=ipr.link_lookup(ifname="r1")[0], state="up")
""")


@retry(retry=retry_if_result(lambda r: r[0] != 0), stop=stop_after_attempt(50), wait=wait_fixed(0.1))
def _client(container, prefix: list[str], server: str) -> tuple[int, bytes]:
    code, out, _ = rt.exec_in(container, [*prefix, "iperf3", "-c", server, "-t", str(SECONDS), "-J"])
    return code, out


def _measure(container_s, prefix_s: list[str], container_c, prefix_c: list[str], server: str) -> float:
    """Gbit/s received, best of ROUNDS runs; the server serves one client then exits."""
    best = 0.0
    for _ in range(ROUNDS):
        container_s.exec_run([*prefix_s, "iperf3", "-s", "-1"], detach=True)
        _, out = _client(container_c, prefix_c, server)
        best = max(best, json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9)
    return best


def run() -> dict[str, float]:
    out: dict[str, float] = {}
    source = (HERE / "topology-throughput.yaml").read_text()
    with tempfile.TemporaryDirectory() as tmp, lab_up(HERE / "topology-throughput.yaml") as ctx:
        for mode in ("vxlan", "host-gw", "bgp"):
            path = Path(tmp) / f"{mode}.yaml"
            path.write_text(source.replace("mtu: 9000", f"mtu: 9000\n  network: {mode}"))
            lab.up(path, say=quiet, replace=True)
            server_pod = podexec.find(ctx.plan, "server")[1]
            client_pod = podexec.find(ctx.plan, "client")[1]
            out[f"{mode}_gbps"] = _measure(ctx.machine(server_pod.node).container, podexec.wrap(server_pod, []),
                                           ctx.machine("node1").container, podexec.wrap(client_pod, []),
                                           server_pod.ipv4)
        c_client = ctx.machine("node1").container
        code, _, err = rt.exec_in(c_client, ["python3", "-c", RAW_PAIR.format(mtu=9000)])
        assert code == 0, err
        ns_a, ns_b = ["ip", "netns", "exec", "rawa"], ["ip", "netns", "exec", "rawb"]
        out["raw_veth_gbps"] = _measure(c_client, ns_b, c_client, ns_a, "192.0.2.2")
        for mode in ("vxlan", "host-gw", "bgp"):
            out[f"{mode}_vs_raw_veth_ratio"] = out[f"{mode}_gbps"] / out["raw_veth_gbps"]
        out["vxlan_vs_plain_ratio"] = out["vxlan_gbps"] / out["host-gw_gbps"]
    return out


if __name__ == "__main__":
    print(run())
