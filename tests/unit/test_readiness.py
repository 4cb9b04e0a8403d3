"""Readiness: probed pods are endpoints only once their agent has seen the probe pass (publishNotReadyAddresses
aside), headless DNS follows them; and the agent's prober itself, against real local sockets and commands."""

import asyncio
import json
from ipaddress import IPv4Network

from testbed.agent.readiness import Prober
from testbed.model import loader
from testbed.plan import cluster, dns

CONTAINER = {"name": "c", "ports": [{"name": "http", "containerPort": 8080}],
             "readinessProbe": {"httpGet": {"port": "http", "path": "/ready"}, "periodSeconds": 1}}
DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"}, "spec": {
    "replicas": 2, "selector": {"matchLabels": {"app": "w"}},
    "template": {"metadata": {"labels": {"app": "w"}}, "spec": {"containers": [CONTAINER]}}}}
SERVICES = [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": {
    "selector": {"app": "w"}, "ports": [{"port": 80, "targetPort": "http"}], **extra}}
            for name, extra in (("w", {}), ("w-all", {"publishNotReadyAddresses": True}),
                                ("w-headless", {"clusterIP": "None"}))]
TOPO = {"apiVersion": "testbed/v1alpha1", "kind": "Topology", "name": "lab", "nodes": 2}


def plan(readiness=None):
    docs = [loader.Doc(d, "x.yaml") for d in [DEPLOY, *SERVICES]]
    from testbed.model.topology import Topology

    return cluster.build(Topology.model_validate(TOPO), loader.load_manifests(docs),
                         IPv4Network("100.64.0.0/24"), None, readiness)


def _svc(p, name):
    return next(s for s in p.services if s.name == name)


def test_probed_pods_are_not_ready_until_seen_passing():
    p = plan()
    assert all(not pod.ready and pod.probes["c"] == {"kind": "http", "port": 8080, "path": "/ready", "scheme": "HTTP",
                                                      "initialDelay": 0, "period": 1, "timeout": 1, "success": 1,
                                                      "failure": 3} for pod in p.pods)
    port = _svc(p, "w").ports[0]
    assert _svc(p, "w").ready_endpoints(port) == []
    assert len(_svc(p, "w-all").ready_endpoints(port)) == 2  # publishNotReadyAddresses
    first = p.pods[0].key
    q = plan({first: True})
    assert [e.pod for e in _svc(q, "w").ready_endpoints(port)] == [first]
    rows, _ = dns.records(q, "cluster.local")
    headless = [r for r in rows if r.startswith("w-headless.")]
    assert headless and any(q.pods[0].ipv4 in r for r in headless)
    assert not any(q.pods[1].ipv4 in r for r in headless)  # not ready: not in the headless answer


def test_the_prober_follows_a_command_and_a_socket(tmp_path):
    async def scenario():
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        prober = Prober(str(tmp_path / "readiness.json"))
        timings = {"initialDelay": 0, "period": 1, "timeout": 1, "success": 1, "failure": 1}
        spec = {"namespace": "d", "name": "p", "ipv4": "127.0.0.1", "netns": "", "hostname": "p", "probes": {
            "sock": {"kind": "tcp", "port": port, **timings}}}
        prober.sync([spec])
        await asyncio.sleep(0.2)
        first = json.loads((tmp_path / "readiness.json").read_text())["pods"]["d/p"]
        server.close()
        await server.wait_closed()
        await asyncio.sleep(1.3)
        second = json.loads((tmp_path / "readiness.json").read_text())["pods"]["d/p"]
        prober.sync([])
        return first, second, json.loads((tmp_path / "readiness.json").read_text())["pods"]

    first, second, after = asyncio.run(scenario())
    assert first == {"ready": True, "containers": {"sock": True}}
    assert second == {"ready": False, "containers": {"sock": False}}
    assert after == {}  # a pod that is gone is forgotten


HTTPS_PROBE = """
import sys
from testbed.agent.light import no_ssl
no_ssl()
import asyncio.base_events
assert sys.modules["ssl"] is None, "asyncio took ssl"
from testbed.agent.readiness import _http
print(asyncio.run(_http("127.0.0.1", int(sys.argv[1]), "/ready", 2, tls=True)))
"""


def test_an_https_probe_works_in_an_agent_that_started_without_ssl(tmp_path, monkeypatch):
    """The agent leaves OpenSSL out of memory until an HTTPS probe asks for it: that probe still passes."""
    monkeypatch.setenv("TESTBED_STATE_DIR", str(tmp_path / "state"))  # the lab CA it makes goes with the test
    import ssl
    import subprocess
    import sys
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from testbed import tls

    chain, key = tls.issue("unit", ["127.0.0.1"])
    (tmp_path / "c.pem").write_bytes(chain)
    (tmp_path / "k.pem").write_bytes(key)

    class Ready(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/ready" else 404)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Ready)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        out = subprocess.run([sys.executable, "-c", HTTPS_PROBE, str(server.server_address[1])], capture_output=True,
                             text=True, timeout=30)
        assert out.stdout.strip() == "True", out.stderr
    finally:
        server.shutdown()


def test_up_waits_only_for_probed_pods_that_have_a_network():
    """A pod whose CNI plugins failed cannot pass its probe until a later sync wires it: `up` does not wait the
    readiness timeout for it (nor for pods that have no probe)."""
    from testbed.runtime.readiness import awaited

    p = plan()
    first, second = sorted(pod.key for pod in p.pods if pod.namespace == "default")
    assert awaited(p, set()).keys() >= {first, second}
    left = awaited(p, {first})
    assert first not in left and second in left
    assert all(pod.probes for pod in p.pods if pod.key in left)
