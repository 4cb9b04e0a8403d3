"""The ingress proxy under load from the external host ext2 (wrk, keep-alive, 50 connections, 2 threads): requests
per second through a Gateway to one backend pod against the same load straight to that pod (the median of three
pairs, run back to back); the p99 latency through the proxy at half the rate that saturates it (wrk's Lua delay
paces each connection); `apply` of an HTTPRoute until it answers; an endpoint added until the proxy sends to it,
with no reload; failed requests during ten reloads under load. All traffic stays in the lab."""

from __future__ import annotations

import re
import statistics
import tempfile
import time
from pathlib import Path

import docker
import yaml
from common import lab_up, quiet, timed
from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

from testbed import lab

SECONDS = 10
PAIRS = 3
TOPOLOGY = {"apiVersion": "testbed/v1alpha1", "kind": "Topology", "name": "bench-edge", "nodes": 3,
            "loadBalancer": {"pools": ["198.51.100.0/28"]}}
WEB = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
       "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 8080}]}]}}}}
BASE = [WEB, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
              "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "gw"},
         "spec": {"gatewayClassName": "testbed", "listeners": [{"name": "h", "port": 80, "protocol": "HTTP"}]}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "web"},
         "spec": {"parentRefs": [{"name": "gw"}], "hostnames": ["web.example.com"],
                  "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}}]


def _route(name: str, host: str) -> dict:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": name},
            "spec": {"parentRefs": [{"name": "gw"}], "hostnames": [host],
                     "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}}


class Client:
    def __init__(self, name: str) -> None:
        self.box = docker.from_env().containers.get(f"{name}-ext2")

    def sh(self, command: str) -> str:
        return self.box.exec_run(["sh", "-c", command]).output.decode(errors="replace")

    def wrk(self, url: str, host: str | None, seconds: int = SECONDS, delay_ms: float = 0) -> dict[str, float]:
        script = ""
        if delay_ms:
            self.sh(f"printf 'function delay() return {delay_ms:.1f} end\\n' > /tmp/pace.lua")
            script = "-s /tmp/pace.lua "
        header = f"-H 'Host: {host}' " if host else ""
        out = self.sh(f"wrk -t2 -c50 -d{seconds}s --latency {script}{header}{url}")
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
        scale = {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)]
        errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        failed = (sum(int(x) for x in errors.groups()) if errors else 0) + (int(bad.group(1)) if bad else 0)
        return {"rate": rate, "p99_ms": float(p99.group(1)) * scale, "failed": failed}

    def code(self, ip: str, host: str, path: str = "/") -> str:
        return self.sh(f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 2 -H 'Host: {host}' http://{ip}{path}")


def _reloads(name: str, node_container: str) -> int:
    box = docker.from_env().containers.get(node_container)
    text = box.exec_run(["sh", "-c", "echo 'show proc' | socat -t 5 - UNIX-CONNECT:/run/testbed/ingress/"
                                     "master.sock"]).output.decode()
    return int(next(line.split()[2] for line in text.splitlines() if " master " in line))


def run() -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        topo = folder / "edge.yaml"
        topo.write_text(yaml.safe_dump({**TOPOLOGY, "manifests": BASE}))
        with lab_up(topo) as ctx:
            name, plan = ctx.lab, ctx.plan
            client = Client(name)
            gw = plan.edge.status["Gateway/default/gw"]["addresses"][0]["value"]
            pod = next(p for p in plan.pods if p.labels.get("app") == "web")
            # single runs swing by a fifth here: pairs run back to back, and the ratio is their median
            pairs = [(client.wrk(f"http://{pod.ipv4}:8080/hostname", None)["rate"],
                      client.wrk(f"http://{gw}/hostname", "web.example.com")["rate"]) for _ in range(PAIRS)]
            ratios = sorted(through / direct for direct, through in pairs)
            out["direct_pod_rps"] = statistics.median(direct for direct, _ in pairs)
            out["gateway_rps"] = through_rps = statistics.median(through for _, through in pairs)
            out["gateway_vs_direct_ratio"] = statistics.median(ratios)
            out["gateway_vs_direct_ratio_lowest"], out["gateway_vs_direct_ratio_highest"] = ratios[0], ratios[-1]
            paced = client.wrk(f"http://{gw}/hostname", "web.example.com", delay_ms=50 * 1000 / (through_rps / 2))
            out["gateway_p99_at_half_rate_ms"], out["gateway_half_rate_rps"] = paced["p99_ms"], paced["rate"]

            path = folder / "route.yaml"
            path.write_text(yaml.safe_dump(_route("fresh", "fresh.example.com")))
            start = time.perf_counter()
            lab.apply(name, path, say=quiet)
            _until(lambda: client.code(gw, "fresh.example.com") == "200")
            out["route_apply_to_served_s"] = time.perf_counter() - start

            proxy = next(p for p in plan.pods if p.namespace == "testbed-ingress")
            node = plan.node(proxy.node).container
            reloads = _reloads(name, node)
            scaled = folder / "scale.yaml"
            scaled.write_text(yaml.safe_dump({**WEB, "spec": {**WEB["spec"], "replicas": 2}}))
            start = time.perf_counter()
            lab.apply(name, scaled, say=quiet)
            new = next(p.name for p in lab.current_plan(name)[1].pods if p.labels.get("app") == "web"
                       and p.name != pod.name)
            _until(lambda: new in client.sh(f"for i in 1 2 3 4; do curl -s --max-time 2 -H 'Host: web.example.com' "
                                            f"http://{gw}/hostname; echo; done"))
            out["endpoint_change_to_served_s"] = time.perf_counter() - start
            out["endpoint_change_reloads"] = _reloads(name, node) - reloads

            loaded = client.box.exec_run(["sh", "-c", f"wrk -t2 -c50 -d20s -H 'Host: web.example.com' "
                                                      f"http://{gw}/hostname > /tmp/reloads.txt 2>&1"], detach=True)
            del loaded
            took, _ = timed(lambda: _reload_ten(name, folder))
            text = _wrk_done(client)
            errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
            bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
            out["failed_requests_during_10_reloads"] = (sum(int(x) for x in errors.groups()) if errors else 0) + \
                (int(bad.group(1)) if bad else 0)
            out["reloads_10_s"] = took
    return out


def _reload_ten(name: str, folder: Path) -> None:
    for i in range(10):
        path = folder / "reload.yaml"
        path.write_text(yaml.safe_dump(_route("reload", f"r{i}.example.com")))
        lab.apply(name, path, say=quiet)


@retry(retry=retry_if_result(lambda t: "Requests/sec" not in t), stop=stop_after_delay(60), wait=wait_fixed(0.5))
def _wrk_done(client: Client) -> str:
    return client.sh("cat /tmp/reloads.txt")


@retry(retry=retry_if_result(lambda ok: not ok), stop=stop_after_delay(30), wait=wait_fixed(0.01))
def _until(check) -> bool:  # type: ignore[no-untyped-def]
    return bool(check())
