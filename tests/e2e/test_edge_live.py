"""The edge while it changes, under real load from the external host ext2 (keep-alive HTTP/1.1, four clients that
never retry): a new Ingress and a new HTTPRoute answer as soon as `apply` returns; scaling a backend 3→1→3
loses no request (the proxies stop sending to pods before they are deleted, through the runtime API, with no
reload); ten reloads lose no request (the master hands the listening sockets to each new worker, and old
workers close idle connections only on their next answer). The Secrets' key material shows in no output."""

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from edgelab import address, client, get, served_by
from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

pytestmark = pytest.mark.topology("tests/e2e/edge.yaml")

LOAD = r"""
import http.client, json, os, sys, threading
ip, host, out = sys.argv[1], sys.argv[2], sys.argv[3]
counts = {"ok": 0, "failed": 0, "errors": []}
lock = threading.Lock()

def client():
    conn = None
    while not os.path.exists(out + ".stop"):
        try:
            if conn is None:
                conn = http.client.HTTPConnection(ip, 80, timeout=5)
            conn.request("GET", "/hostname", headers={"Host": host})
            reply = conn.getresponse()
            reply.read()
            good = reply.status == 200
            if reply.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except Exception as err:
            good = False
            reply = err
            if conn is not None:
                conn.close()
            conn = None
        with lock:
            counts["ok" if good else "failed"] += 1
            if not good and len(counts["errors"]) < 10:
                counts["errors"].append(repr(getattr(reply, "status", reply)))

threads = [threading.Thread(target=client) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
with open(out, "w") as f:
    json.dump(counts, f)
"""


class Load:
    """Keep-alive requests from ext2 to host through the ingress address, until stopped."""

    def __init__(self, lab, host: str) -> None:
        self.box, self.out = client(lab), "/tmp/testbed-load.json"
        self.box.exec_run(["rm", "-f", self.out, self.out + ".stop"])
        self.box.exec_run(["python3", "-c", LOAD, address(lab), host, self.out], detach=True)

    @retry(retry=retry_if_result(lambda x: x is None), stop=stop_after_delay(30), wait=wait_fixed(0.2))
    def _result(self) -> dict | None:
        got = self.box.exec_run(["cat", self.out])
        return json.loads(got.output) if got.exit_code == 0 else None

    def stop(self) -> dict:
        self.box.exec_run(["touch", self.out + ".stop"])
        return self._result()


def _deployment(replicas: int) -> dict:
    topo = yaml.safe_load((Path(__file__).parent / "edge.yaml").read_text())
    web = next(m for m in topo["manifests"] if m["kind"] == "Deployment" and m["metadata"]["name"] == "web")
    return {**web, "spec": {**web["spec"], "replicas": replicas}}


def _ingress(name: str, host: str, path: str = "/") -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name},
            "spec": {"rules": [{"host": host, "http": {"paths": [
                {"path": path, "pathType": "Prefix",
                 "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}


def _reloads(lab) -> int:
    """The master's reload count on the first proxy's node."""
    pod = next(p for p in lab.plan.pods if p.namespace == "testbed-ingress")
    box = client(lab).client.containers.get(lab.plan.node(pod.node).container)
    text = box.exec_run(["sh", "-c", "echo 'show proc' | socat -t 5 - UNIX-CONNECT:/run/testbed/ingress/"
                                     "master.sock"]).output.decode()
    return int(next(line.split()[2] for line in text.splitlines() if " master " in line))


def test_a_new_ingress_and_route_answer_when_apply_returns(testbed_lab, tmp_path):
    lab = testbed_lab
    path = tmp_path / "new.yaml"
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "fresh"},
             "spec": {"parentRefs": [{"name": "fresh-gw"}], "hostnames": ["fresh.example.net"],
                      "rules": [{"backendRefs": [{"name": "api", "port": 8080}]}]}}
    gateway = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "fresh-gw"},
               "spec": {"gatewayClassName": "testbed", "listeners": [{"name": "h", "port": 80, "protocol": "HTTP"}]}}
    path.write_text(yaml.safe_dump_all([_ingress("fresh", "fresh.example.com"), gateway, route]))
    assert served_by(lab, "fresh.example.com") == "404"
    lab.apply(path)
    try:
        assert served_by(lab, "fresh.example.com") == "web"
        assert served_by(lab, "fresh.example.net", ip=address(lab, "default/fresh-gw")) == "api"
    finally:
        lab.delete(path)
    assert served_by(lab, "fresh.example.com") == "404"


def test_scaling_a_backend_three_one_three_answers_every_request(testbed_lab, tmp_path):
    lab = testbed_lab
    reloads = _reloads(lab)
    load = Load(lab, "web.example.com")
    try:
        for replicas in (1, 3, 1, 3):
            (tmp_path / "web.yaml").write_text(yaml.safe_dump(_deployment(replicas)))
            lab.apply(tmp_path / "web.yaml")
            assert len(lab.pods("default", app="web")) == replicas
    finally:
        result = load.stop()
    assert result["failed"] == 0, result
    assert result["ok"] > 100, result
    assert _reloads(lab) == reloads  # endpoints changed through the runtime API only


def test_ten_reloads_under_load_lose_no_request(testbed_lab, tmp_path):
    lab = testbed_lab
    reloads = _reloads(lab)
    load = Load(lab, "web.example.com")
    try:
        for i in range(10):  # each a new path: a new ACL, so a new configuration to load
            (tmp_path / "r.yaml").write_text(yaml.safe_dump(_ingress("reloading", "reload.example.com", f"/v{i}")))
            lab.apply(tmp_path / "r.yaml")
    finally:
        result = load.stop()
        lab.delete(tmp_path / "r.yaml")
    assert _reloads(lab) >= reloads + 10
    assert result["failed"] == 0, result
    assert result["ok"] > 100, result


def test_key_material_shows_in_no_output(testbed_lab):
    lab = testbed_lab
    done = subprocess.run([sys.executable, "-m", "testbed", "tls", "issue", "keys.example.com", "--secret",
                           "default/keys-tls", "--lab", lab.name], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    secret = next(m["data"] for m in _stored(lab.name) if m["data"]["kind"] == "Secret"
                  and m["data"]["metadata"]["name"] == "keys-tls")
    key_pem = base64.b64decode(secret["data"]["tls.key"]).decode()
    secrets = [secret["data"]["tls.key"], key_pem.splitlines()[1]]
    pod = next(p for p in lab.plan.pods if p.namespace == "testbed-ingress")
    outputs = [done.stdout + done.stderr]
    for args in (["status", "--json"], ["ingresses", "--json"], ["ingresses"], ["events", "--tail", "-1"],
                 ["events", "--json"], ["logs", pod.key], ["describe", pod.key], ["diagnose", "--json"]):
        got = subprocess.run([sys.executable, "-m", "testbed", *args, "--lab", lab.name], capture_output=True,
                             text=True, timeout=120)
        outputs.append(got.stdout + got.stderr)
    for text in outputs:
        for s in secrets:
            assert s not in text
    assert get(lab, "web.example.com").code == 200


def _stored(name: str) -> list[dict]:
    from testbed import state

    st = state.load(name)
    path = state.lab_dir(name) / "state.json"
    assert oct(path.stat().st_mode & 0o777) == "0o600" and oct(path.parent.stat().st_mode & 0o777) == "0o700"
    return st.manifests
