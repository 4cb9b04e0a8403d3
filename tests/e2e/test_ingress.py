"""networking.k8s.io/v1 Ingress through the HAProxy pods, with real requests from the external host ext2 to the
ingress LoadBalancer address: hosts and wildcards, each pathType and the precedence between them, a named Service
port, a missing Service, the default backend and 404, an Ingress of another class, TLS by SNI with certificates
verified against the lab's CA, the HTTP→HTTPS redirect, forwarded headers, and the Ingress's status."""

import subprocess
import sys

import pytest
from edgelab import address, get, served_by, trust

pytestmark = pytest.mark.topology("tests/e2e/edge.yaml")


def test_hosts_and_a_wildcard_that_stands_for_one_label(testbed_lab):
    lab = testbed_lab
    assert served_by(lab, "web.example.com") == "web"
    assert served_by(lab, "a.wild.example.com") == "api"  # by the Service port's name
    assert served_by(lab, "a.b.wild.example.com") == "404"  # a wildcard is exactly one label
    assert served_by(lab, "wild.example.com") == "404"
    assert served_by(lab, ["WEB.example.com", "80"][0].lower()) == "web"


@pytest.mark.parametrize(("path", "backend"), [
    ("/foo", "api"),          # Exact wins over Prefix at equal length
    ("/foo/", "web"),         # Prefix is element-wise: /foo matches /foo/ ...
    ("/foo/x", "web"),        # ... and /foo/x
    ("/foobar", "404"),       # ... but not /foobar
    ("/foo/bar", "api"),      # the longest prefix wins
    ("/foo/bar/baz", "api"),
    ("/foo/barbaz", "web"),
    ("/exact", "api"),
    ("/exact/", "404"),       # Exact is exact
    ("/impl", "api"),         # ImplementationSpecific: a string prefix
    ("/implant", "api"),
    ("/gone", "503"),         # a Service that does not exist
])
def test_path_types_and_precedence(testbed_lab, path, backend):
    assert served_by(testbed_lab, "paths.example.com", path) == backend


def test_an_ingress_of_another_class_is_ignored_and_says_so(testbed_lab):
    assert served_by(testbed_lab, "ignored.example.com") == "404"
    summary = testbed_lab.plan.edge.summary["Ingress/default/ignored"]
    assert "ignored" in summary
    assert "Ingress/default/ignored" not in testbed_lab.plan.edge.status


def test_status_holds_the_address_and_the_missing_service_is_a_warning(testbed_lab):
    lab = testbed_lab
    ip = address(lab)
    for name in ("hosts", "paths"):
        assert lab.plan.edge.status[f"Ingress/default/{name}"] == {"loadBalancer": {"ingress": [{"ip": ip}]}}
    assert any("nosuch" in w for w in lab.plan.edge.warnings)
    found = [c for c in lab.status()["checks"] if c["module"] == "ingress" and c["status"] == "warn"]
    assert any("nosuch" in c["message"] for c in found)


def test_forwarded_headers_reach_the_backend(testbed_lab):
    doc = get(testbed_lab, "web.example.com", "/echo-me?x=1").doc
    headers = doc["headers"]
    assert headers["X-Forwarded-Proto"] == ["http"]
    assert headers["X-Forwarded-Host"] == ["web.example.com"]
    assert headers["X-Forwarded-For"]
    assert (doc["path"], doc["query"], doc["host"]) == ("/echo-me", "x=1", "web.example.com")


def test_node_ports_serve_too(testbed_lab):
    node = testbed_lab.plan.nodes[0]
    assert served_by(testbed_lab, "web.example.com", ip=node.underlay_ip, port=30080) == "web"


DEFAULT = """apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: fallback}
spec:
  defaultBackend: {service: {name: api, port: {number: 8080}}}
"""


def test_the_default_backend_takes_what_no_rule_matches(testbed_lab, tmp_path):
    lab = testbed_lab
    assert served_by(lab, "nowhere.example.com") == "404"
    (tmp_path / "default.yaml").write_text(DEFAULT)
    lab.apply(tmp_path / "default.yaml")
    try:
        assert served_by(lab, "nowhere.example.com") == "api"
        assert served_by(lab, "paths.example.com", "/foobar") == "api"
        assert served_by(lab, "web.example.com") == "web"  # rules still come first
    finally:
        lab.delete(tmp_path / "default.yaml")
    assert served_by(lab, "nowhere.example.com") == "404"


TLS = """apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: secure}
spec:
  tls:
    - {hosts: [one.example.com], secretName: one-tls}
    - {hosts: [two.example.com], secretName: two-tls}
  rules:
    - host: one.example.com
      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}
    - host: two.example.com
      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: api, port: {number: 8080}}}}]}
"""


def _testbed(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "testbed", *args], capture_output=True, text=True, timeout=120)


def _certificate_of(lab, host: str) -> str:
    """The subject and issuer of the certificate the proxy presents for host (SNI), as Python's ssl on ext2
    reads them once it has verified the chain against the lab's CA."""
    from edgelab import client

    script = ("import socket, ssl, sys; c = ssl.create_default_context(cafile='/tmp/testbed-ca.pem'); "
              "s = c.wrap_socket(socket.create_connection((sys.argv[1], 443), timeout=5), "
              "server_hostname=sys.argv[2]); "
              "d = s.getpeercert(); print(dict(x[0] for x in d['subject']), dict(x[0] for x in d['issuer']))")
    return client(lab).exec_run(["python3", "-c", script, address(lab), host]).output.decode()


def test_tls_by_sni_with_the_labs_ca_and_the_redirect_to_https(testbed_lab, tmp_path):
    lab = testbed_lab
    for host, secret in (("one.example.com", "one-tls"), ("two.example.com", "two-tls")):
        done = _testbed("tls", "issue", host, "--secret", f"default/{secret}", "--lab", lab.name)
        assert done.returncode == 0, done.stderr
    ca = _testbed("tls", "ca", "--lab", lab.name)
    assert ca.stdout.startswith("-----BEGIN CERTIFICATE-----")
    trust(lab, ca.stdout)
    (tmp_path / "tls.yaml").write_text(TLS)
    lab.apply(tmp_path / "tls.yaml")
    try:
        one = get(lab, "one.example.com", "/x", scheme="https")
        two = get(lab, "two.example.com", "/x", scheme="https")
        assert (one.code, two.code) == (200, 200), (one.body, two.body)  # verified against the lab's CA
        assert (one.pod.split("-")[0], two.pod.split("-")[0]) == ("web", "api")
        assert one.doc["headers"]["X-Forwarded-Proto"] == ["https"]
        assert "'commonName': 'one.example.com'" in _certificate_of(lab, "one.example.com")
        assert "'commonName': 'two.example.com'" in _certificate_of(lab, "two.example.com")
        assert f"testbed lab {lab.name} CA" in _certificate_of(lab, "two.example.com")
        plain = get(lab, "one.example.com", "/a/b?c=d")
        assert plain.code == 308
        assert plain.header("location") == "https://one.example.com/a/b?c=d"
        assert served_by(lab, "web.example.com") == "web"  # a host without TLS stays on HTTP
    finally:
        lab.delete(tmp_path / "tls.yaml")


def test_ingresses_verb_shows_rules_and_addresses(testbed_lab):
    done = _testbed("ingresses", "--lab", testbed_lab.name)
    assert done.returncode == 0, done.stderr
    assert "paths.example.com" in done.stdout and "/foo/bar (Prefix)" in done.stdout
    assert address(testbed_lab) in done.stdout
    as_json = _testbed("ingresses", "--lab", testbed_lab.name, "--json")
    assert '"ignored"' in as_json.stdout
    import json

    status = json.loads(_testbed("status", "--lab", testbed_lab.name, "--json").stdout)
    assert status["edge"]["status"]["Ingress/default/paths"]["loadBalancer"]["ingress"][0]["ip"] == \
        address(testbed_lab)
