"""The Kubernetes layer at size: 1,000 Deployments of 10 pods (10,000 pods), then a Service for each (1,000
Services x 10 endpoints), then 200 NetworkPolicies, each applied through the CLI on one lab of
TESTBED_BENCH_CLUSTER_NODES nodes (default 50; the issue's size is 200). Every node's kube-proxy and policy
rules are programmed when `apply` returns (the agents answer once their rules hold), so each apply's time is
the slowest node's sync plus the CLI. Then cluster DNS is asked every Service's name from one pod (`dig -f`,
one query each) and the bench counts the names that got their ClusterIP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT

LAB = "bench-cluster"
DEPLOYMENTS, REPLICAS, POLICIES = 1000, 10, 200


def _cli(*args: str) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "testbed", *args], check=False, capture_output=True, text=True,
                          cwd=ROOT, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"testbed {' '.join(args)}: exit {done.returncode}: {done.stderr[-2000:]}")
    return time.perf_counter() - start, done.stdout


def _docs(docs: list[str]) -> str:
    return "---\n".join(docs)


def _deployments() -> str:
    return _docs([f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: d{i}}}
spec:
  replicas: {REPLICAS}
  selector: {{matchLabels: {{app: d{i}}}}}
  template:
    metadata: {{labels: {{app: d{i}, tier: t{i % 20}}}}}
    spec: {{containers: [{{name: c, ports: [{{containerPort: 8080}}]}}]}}
""" for i in range(DEPLOYMENTS)])


def _services() -> str:
    return _docs([f"""apiVersion: v1
kind: Service
metadata: {{name: s{i}}}
spec: {{selector: {{app: d{i}}}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}
""" for i in range(DEPLOYMENTS)])


def _policies() -> str:
    # each selects one Deployment's pods and lets in two tiers on the port: ingress rules on 10 pods apiece
    return _docs([f"""apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: p{i}}}
spec:
  podSelector: {{matchLabels: {{app: d{i}}}}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector: {{matchLabels: {{tier: t{i % 20}}}}}
    - podSelector: {{matchLabels: {{tier: t{(i + 1) % 20}}}}}
    ports: [{{port: 8080, protocol: TCP}}]
""" for i in range(POLICIES)])


def run() -> dict[str, float]:
    nodes = int(os.environ.get("TESTBED_BENCH_CLUSTER_NODES", "50"))
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        topo = folder / "cluster.yaml"
        topo.write_text(f"apiVersion: testbed/v1alpha1\nkind: Topology\nname: {LAB}\nnodes: {nodes}\n")
        files = {"pods": _deployments(), "services": _services(), "policies": _policies()}
        for name, text in files.items():
            (folder / f"{name}.yaml").write_text(text)
        try:
            out[f"cluster_up_s_{nodes}_nodes"], _ = _cli("up", "-q", str(topo))
            for name in files:
                took, _ = _cli("apply", "--lab", LAB, "-f", str(folder / f"{name}.yaml"))
                out[f"cluster_apply_{name}_s"] = took
                print(f"  cluster_apply_{name}_s: {took:.2f}", file=sys.stderr, flush=True)
            out["cluster_resync_s"], _ = _cli("apply", "--lab", LAB, "-f", str(folder / "policies.yaml"))
            out["cluster_dns_answered"] = _dns(folder)
        finally:
            subprocess.run([sys.executable, "-m", "testbed", "down", LAB], capture_output=True, cwd=ROOT,
                           check=False, timeout=600)
    return out


def _dns(folder: Path) -> float:
    """How many of the 1,000 Service names answer their ClusterIP, asked from one pod."""
    _, text = _cli("status", "--lab", LAB, "--json")
    status = json.loads(text)
    ips = {s["name"]: s["clusterIPs"][0] for s in status["services"] if s["namespace"] == "default"}
    pod = next(p for p in status["pods"] if p["namespace"] == "default")
    queries = "\n".join(f"s{i}.default.svc.cluster.local A" for i in range(DEPLOYMENTS))
    done = subprocess.run([sys.executable, "-m", "testbed", "exec", "--lab", LAB, f"default/{pod['name']}", "--",
                           "sh", "-c", f"printf '%s\\n' '{queries}' > /tmp/q && dig +noall +answer +time=2 "
                           "+tries=2 -f /tmp/q"], capture_output=True, text=True, cwd=ROOT, check=False, timeout=600)
    answered = 0
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[3] == "A":
            name = parts[0].split(".")[0]
            answered += ips.get(name) == parts[4]
    return float(answered)


if __name__ == "__main__":
    print(run())
