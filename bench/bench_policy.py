"""NetworkPolicy: apply-to-enforcement on all nodes, the 9x9 probe matrix on 2 ports and 2 protocols, the rule sync
of 200 policies over 500 pods on one node (rendered from a real plan, applied through the node's agent as `up`
does, then one policy changed), and pod-to-pod throughput with 200 policies in force against none."""

from __future__ import annotations

import tempfile
import time
from ipaddress import IPv4Network
from pathlib import Path

import yaml
from bench_throughput import _measure
from common import HERE, ROOT, lab_up, quiet, timed

from testbed import lab
from testbed.installers.policy import nft
from testbed.installers.policy.view import node_view
from testbed.model import loader
from testbed.observe import matrix
from testbed.plan import cluster
from testbed.pytest_plugin import Lab
from testbed.runtime import agent, podexec

GROUPS = 50


def policies(count: int, selector_key: str = "app", tag: str = "") -> list[dict]:
    """count policies, each selecting one group of pods and admitting two other groups (one by namespace and
    pod labels, one by pod label) on a named and a numbered port."""
    out = []
    for i in range(count):
        g = i % GROUPS
        out.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": {"name": f"p{i}{tag}", "namespace": "default"},
                    "spec": {"podSelector": {"matchLabels": {selector_key: f"g{g}"}}, "ingress": [
                        {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "default"}},
                                   "podSelector": {"matchLabels": {"app": f"g{(g + 1) % GROUPS}"}}},
                                  {"podSelector": {"matchLabels": {"app": f"g{(g + 7) % GROUPS}"}}}],
                         "ports": [{"port": "http"}, {"port": 9000 + i % 5, "protocol": "UDP"}]}]}})
    return out


def synthetic_plan(count: int, tag: str = "") -> cluster.Plan:
    topo = {"apiVersion": "testbed/v1alpha1", "kind": "Topology", "name": "bench-pol-sync", "nodes": 2,
            "networking": {"nodeMaskSize": 23}}
    docs = [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"g{g}"}, "spec": {
        "replicas": 10, "selector": {"matchLabels": {"app": f"g{g}"}}, "template": {
            "metadata": {"labels": {"app": f"g{g}"}},
            "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]}}}}
        for g in range(GROUPS)] + policies(count, tag=tag)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.yaml"
        path.write_text(yaml.safe_dump({**topo, "manifests": docs}))
        loaded = loader.load_topology(path)
    return cluster.build(loaded.topology, loaded.manifests, IPv4Network("100.64.0.0/24"))


def _sync_figures(run_dir: Path) -> dict[str, float]:
    plan = synthetic_plan(200)
    render_s, text = timed(lambda: nft.render(node_view(plan, "node1", plan.policies)))
    apply_s, _ = timed(lambda: agent.call(run_dir, "rules", family=nft.FAMILY, table=nft.TABLE, text=text,
                                          timeout=300))
    changed = synthetic_plan(200)
    changed.policies[100].spec.ingress[0].ports[1].port = 9999
    text2 = nft.render(node_view(changed, "node1", changed.policies))
    one_s, _ = timed(lambda: agent.call(run_dir, "rules", family=nft.FAMILY, table=nft.TABLE, text=text2,
                                        timeout=300))
    agent.call(run_dir, "rules", family=nft.FAMILY, table=nft.TABLE, text=None)
    return {"policy_pods": float(len(plan.pods)), "policy_render_200x500_s": render_s,
            "policy_full_sync_200x500_s": render_s + apply_s, "policy_one_change_sync_s": one_s}


def _throughput(tmp: Path) -> dict[str, float]:
    topo = tmp / "tput.yaml"
    source = (HERE / "topology-throughput.yaml").read_text().replace("name: bench-tput", "name: bench-pol")
    source = source.replace("metadata: {name: server}", "metadata: {name: server, labels: {app: g0}}")
    source = source.replace("metadata: {name: client}", "metadata: {name: client, labels: {app: g1}}")
    topo.write_text(source)
    out: dict[str, float] = {}
    with lab_up(topo) as ctx:
        bench = Lab(ctx.lab)
        server, client = bench.pod("server"), bench.pod("client")

        def measure() -> float:
            return _measure(ctx.machine(server.node).container, podexec.wrap(server, []),
                            ctx.machine(client.node).container, podexec.wrap(client, []), server.ipv4)

        out["policy_none_gbps"] = measure()
        iperf = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "iperf"},
                 "spec": {"podSelector": {"matchLabels": {"app": "g0"}}, "ingress": [
                     {"from": [{"podSelector": {"matchLabels": {"app": "g1"}}}], "ports": [{"port": 5201}]}]}}
        many = [*policies(199, tag="x"), iperf]
        path = tmp / "policies.yaml"
        path.write_text(yaml.safe_dump_all(many))
        lab.apply(ctx.lab, path, say=quiet)
        assert bench.probe("client", f"{server.ipv4}:8080", timeout=0.5)["result"] == "timeout"  # in force
        out["policy_200_gbps"] = measure()
        out["policy_200_vs_none_ratio"] = out["policy_200_gbps"] / out["policy_none_gbps"]
    return out


def run() -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        topo = Path(tmp) / "policy.yaml"
        doc = yaml.safe_load((ROOT / "tests" / "e2e" / "policy.yaml").read_text())
        doc["name"] = "bench-pol"
        doc["manifests"] = [str(ROOT / "topologies" / "manifests" / "netpol-model.yaml")]
        topo.write_text(yaml.safe_dump(doc))
        with lab_up(topo) as ctx:
            bench = Lab(ctx.lab)
            deny = Path(tmp) / "deny.yaml"
            deny.write_text(yaml.safe_dump({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                                            "metadata": {"name": "deny", "namespace": "x"},
                                            "spec": {"podSelector": {}}}))
            start = time.perf_counter()
            lab.apply(ctx.lab, deny, say=quiet)
            out["policy_apply_to_enforced_s"] = time.perf_counter() - start
            for target in ("x/a", "x/b"):  # one on each node: both already drop new flows
                ip = bench.pod(target).ipv4
                assert bench.probe("y/a", f"{ip}:80", timeout=0.5)["result"] == "timeout", target
            out["policy_matrix_9x9x2x2_s"], cells = timed(lambda: matrix.run(
                ctx.lab, ["x", "y", "z"], [], [80, 81], ["tcp", "udp"], "pod"))
            out["policy_matrix_disagreements"] = float(sum(not c.agrees for c in cells))
            out |= _sync_figures(ctx.run_dir("node1"))
        out |= _throughput(Path(tmp))
    return out


if __name__ == "__main__":
    print(run())
