"""One lab over two Docker engines (the second isolated as another host is, scripts/second-engine.sh, on its own
veth "LAN" of the benchmark range): pod→pod TCP throughput across the hosts against within one (iperf3, one
stream, 5 s, best of 2: the ratio is the stitch's cost), with the LAN's 1500 bytes and again with a jumbo LAN and
`networking.mtu: 9000` (a packet crossing hosts is encapsulated twice, and the stitch's device cannot segment a
packet that is a tunnel's already, so the kernel does it in software: fewer, larger packets are the lever); and
`up` of a 4-node lab split 2 + 2 against the same lab on one engine (the node image already on both)."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import yaml
from bench_throughput import _measure
from common import ROOT, quiet, timed

from testbed import lab
from testbed.runtime import podexec

ENGINE, LAN, HERE, THERE = "tbbench2", "198.18.0.12/30", "198.18.0.13", "198.18.0.14"
NAME = "bench-split"


def _topology(engine: str | None, mtu: int = 1500) -> dict:
    pod = lambda n, node: {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": n},  # noqa: E731
                           "spec": {"nodeName": node, "containers": [{"name": "c"}]}}
    topo = {"apiVersion": "testbed/v1alpha1", "kind": "Topology", "name": NAME, "nodes": 4,
            "networking": {"mtu": mtu},
            "manifests": [pod("client", "node1"), pod("near", "node2"), pod("far", "node3")]}
    if engine:
        topo["hosts"] = [{"name": "here", "address": HERE}, {"name": "there", "engine": engine, "address": THERE}]
        topo["nodes"] = [{"name": f"node{i}", "host": "here" if i < 3 else "there"} for i in range(1, 5)]
    return topo


def _gbps(ctx: object, server: str) -> float:
    plan = ctx.plan  # type: ignore[attr-defined]
    s, c = podexec.find(plan, server)[1], podexec.find(plan, "client")[1]
    return _measure(podexec.running(plan.node(s.node).container, s).container, podexec.wrap(s, []),
                    podexec.running(plan.node("node1").container, c).container, podexec.wrap(c, []), s.ipv4)


def run() -> dict[str, float]:
    up = subprocess.run(["bash", str(ROOT / "scripts" / "second-engine.sh"), "up", ENGINE, LAN], capture_output=True,
                        text=True, timeout=120, check=True)
    engine = up.stdout.strip()
    out: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            split, single = Path(tmp) / "split.yaml", Path(tmp) / "single.yaml"
            split.write_text(yaml.safe_dump(_topology(engine)))
            single.write_text(yaml.safe_dump(_topology(None)))
            lab.up(split, say=quiet)  # the first: the node image goes to the second engine
            lab.down(NAME, say=quiet)
            out["hosts_up_split_s"], ctx = timed(lambda: lab.up(split, say=quiet))
            out["hosts_within_host_gbps"] = _gbps(ctx, "near")
            out["hosts_across_hosts_gbps"] = _gbps(ctx, "far")
            out["hosts_across_vs_within_ratio"] = out["hosts_across_hosts_gbps"] / out["hosts_within_host_gbps"]
            lab.down(NAME, say=quiet)
            out["hosts_up_one_engine_s"], _ = timed(lambda: lab.up(single, say=quiet))
            lab.down(NAME, say=quiet)
            for argv in (["ip", "link", "set", f"{ENGINE}-lan", "mtu", "9000"],  # the fixture's LAN, both ends
                         ["ip", "netns", "exec", ENGINE, "ip", "link", "set", "lan0", "mtu", "9000"]):
                subprocess.run(argv, check=True)
            split.write_text(yaml.safe_dump(_topology(engine, 9000)))
            ctx = lab.up(split, say=quiet)
            out["hosts_jumbo_within_host_gbps"] = _gbps(ctx, "near")
            out["hosts_jumbo_across_hosts_gbps"] = _gbps(ctx, "far")
            out["hosts_jumbo_across_vs_within_ratio"] = (out["hosts_jumbo_across_hosts_gbps"]
                                                         / out["hosts_jumbo_within_host_gbps"])
    finally:
        lab.down(NAME, say=quiet)
        subprocess.run(["bash", str(ROOT / "scripts" / "second-engine.sh"), "down", ENGINE, LAN],
                       capture_output=True, timeout=120, check=False)
    return out


if __name__ == "__main__":
    print(run())
