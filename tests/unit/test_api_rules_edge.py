"""The edge kinds' validation, rule by rule: Ingress and IngressClass as ValidateIngress/ValidateIngressClass
check them (k8s.io/kubernetes pkg/apis/networking/validation), Secret as ValidateSecret (pkg/apis/core/validation,
plus a TLS pair that parses and belongs together), and the Gateway API's kinds as their CRDs' OpenAPI schemas
and CEL rules check them (sigs.k8s.io/gateway-api apis/v1). Each broken manifest must be refused naming the
file, the line, the field and the reason; VALID ones must load."""

import base64
import datetime

import pytest
from apirules import edit, load, refused
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _pair() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM), key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


CERT, KEY = _pair()
_, OTHER_KEY = _pair()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()




BACKEND = {"service": {"name": "web", "port": {"number": 80}}}
ING = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i"},
       "spec": {"rules": [{"host": "a.example.com", "http": {"paths": [
           {"path": "/", "pathType": "Prefix", "backend": BACKEND}]}}]}}
CLASS = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "c"},
         "spec": {"controller": "example.com/ingress"}}
SECRET = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "kubernetes.io/tls",
          "data": {"tls.crt": b64(CERT), "tls.key": b64(KEY)}}
GW = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "g"},
      "spec": {"gatewayClassName": "testbed", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}
ROUTE = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "r"},
         "spec": {"parentRefs": [{"name": "g"}], "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}}
GRANT = {"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant", "metadata": {"name": "rg"},
         "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "a"}],
                  "to": [{"group": "", "kind": "Service"}]}}
PATH0 = "spec.rules.0.http.paths.0"

RULES = [
    # Ingress (ValidateIngressSpec, validateIngressRules, validateHTTPIngressPath, validateIngressBackend)
    ("Ingress path: must be an absolute path", edit(ING, f"{PATH0}.path", "foo"), f"{PATH0}.path",
     "must be an absolute path"),
    ("Ingress path: invalidPathSequences ('//' ...) for Exact and Prefix", edit(ING, f"{PATH0}.path", "/a//b"),
     f"{PATH0}.path", "must not contain '//'"),
    ("Ingress path: invalidPathSuffixes ('/..', '/.')", edit(ING, f"{PATH0}.path", "/a/.."), f"{PATH0}.path",
     "must not end with '/..'"),
    ("Ingress pathType: Exact, Prefix or ImplementationSpecific", edit(ING, f"{PATH0}.pathType", "Regex"),
     f"{PATH0}.pathType", "'Exact', 'Prefix' or 'ImplementationSpecific'"),
    ("Ingress pathType: Required", edit(ING, f"{PATH0}", {"path": "/", "backend": BACKEND}), f"{PATH0}.pathType",
     "Field required"),
    ("Ingress host: a DNS name, not an IP address", edit(ING, "spec.rules.0.host", "10.0.0.1"),
     "spec.rules.0.host", "not an IP address"),
    ("Ingress host: no port", edit(ING, "spec.rules.0.host", "a.example.com:80"), "spec.rules.0.host",
     "without a port"),
    ("Ingress host: a wildcard only as the first label", edit(ING, "spec.rules.0.host", "a.*.example.com"),
     "spec.rules.0.host", "only be the first label"),
    ("Ingress backend: service and resource exclude each other",
     edit(ING, f"{PATH0}.backend", {**BACKEND, "resource": {"kind": "Bucket", "name": "b"}}),
     f"{PATH0}.backend.resource", "cannot be set with service"),
    ("Ingress backend port: exactly one of name and number",
     edit(ING, f"{PATH0}.backend.service.port", {"name": "http", "number": 80}), f"{PATH0}.backend.service.port",
     "exactly one of name and number"),
    ("Ingress backend port name: an IANA service name", edit(ING, f"{PATH0}.backend.service.port", {"name": "HTTP"}),
     f"{PATH0}.backend.service.port.name", "not an IANA service name"),
    ("Ingress backend port number: 1-65535", edit(ING, f"{PATH0}.backend.service.port", {"number": 70000}),
     f"{PATH0}.backend.service.port.number", "less than or equal to 65535"),
    ("Ingress: defaultBackend or rules", edit(ING, "spec", {}), "spec", "either defaultBackend or rules"),
    ("Ingress tls hosts: DNS names", edit(ING, "spec.tls", [{"hosts": ["a_b.example.com"], "secretName": "s"}]),
     "spec.tls.0.hosts.0", "not a DNS-1123 subdomain"),
    ("IngressClass controller: a domain-prefixed path", edit(CLASS, "spec.controller", "nginx"),
     "spec.controller", "domain-prefixed path"),
    # Secret (ValidateSecret; kubernetes.io/tls keys; testbed: the pair parses and matches)
    ("Secret data: base64", edit(SECRET, ("data", "tls.crt"), "not base64!"), "data.tls.crt", "not valid base64"),
    ("Secret data keys: config keys", edit(SECRET, "data", {"a b": "eA=="}), "data", "key 'a b'"),
    ("Secret kubernetes.io/tls: tls.key required", edit(SECRET, "data", {"tls.crt": b64(CERT)}), "data.tls.key",
     "is required for type kubernetes.io/tls"),
    ("Secret kubernetes.io/tls: tls.crt parses", edit(SECRET, ("data", "tls.crt"), b64(b"garbage")), "data.tls.crt",
     "not a PEM certificate"),
    ("Secret kubernetes.io/tls: tls.key parses", edit(SECRET, ("data", "tls.key"), b64(b"garbage")), "data.tls.key",
     "not an unencrypted PEM private key"),
    ("Secret kubernetes.io/tls: the key belongs to the certificate", edit(SECRET, ("data", "tls.key"), b64(OTHER_KEY)),
     "data.tls.key", "does not belong to the certificate"),
    ("Secret kubernetes.io/tls: stringData is checked too",
     edit(SECRET, "data", {}) | {"stringData": {"tls.crt": CERT.decode(), "tls.key": OTHER_KEY.decode()}},
     "stringData.tls.key", "does not belong to the certificate"),
    # Gateway (CRD schema and CEL)
    ("Gateway listeners: 1-64", edit(GW, "spec.listeners", []), "spec.listeners", "at least 1 item"),
    ("Gateway listener: tls required for HTTPS", edit(GW, "spec.listeners.0.protocol", "HTTPS"),
     "spec.listeners.0.tls", "must be specified for protocol HTTPS"),
    ("Gateway listener: no tls for HTTP",
     edit(GW, "spec.listeners.0.tls", {"certificateRefs": [{"name": "s"}]}), "spec.listeners.0.tls",
     "must not be specified for protocol HTTP"),
    ("Gateway listener names unique",
     edit(GW, "spec.listeners", [{"name": "a", "port": 80, "protocol": "HTTP"},
                                 {"name": "a", "port": 81, "protocol": "HTTP"}]),
     "spec.listeners.1.name", "listener names must be unique"),
    ("Gateway listener hostname: no IP", edit(GW, "spec.listeners.0.hostname", "192.0.2.1"),
     "spec.listeners.0.hostname", "not an IP address"),
    ("Gateway listener port: 1-65535", edit(GW, "spec.listeners.0.port", 0), "spec.listeners.0.port",
     "greater than or equal to 1"),
    ("Gateway allowedRoutes Selector needs a selector",
     edit(GW, "spec.listeners.0.allowedRoutes", {"namespaces": {"from": "Selector"}}),
     "spec.listeners.0.allowedRoutes.namespaces.selector", "must be specified when from is Selector"),
    ("GatewayClass controllerName: a domain-prefixed path",
     {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "x"},
      "spec": {"controllerName": "nope"}}, "spec.controllerName", "domain-prefixed path"),
    # HTTPRoute (CRD schema and CEL)
    ("HTTPRoute backendRef weight: 0-1,000,000", edit(ROUTE, "spec.rules.0.backendRefs.0.weight", 1_000_001),
     "spec.rules.0.backendRefs.0.weight", "less than or equal to 1000000"),
    ("HTTPRoute backendRef weight: not below 0", edit(ROUTE, "spec.rules.0.backendRefs.0.weight", -1),
     "spec.rules.0.backendRefs.0.weight", "greater than or equal to 0"),
    ("HTTPRoute backendRef: a Service needs a port", edit(ROUTE, "spec.rules.0.backendRefs.0", {"name": "web"}),
     "spec.rules.0.backendRefs.0.port", "must be set for a Service reference"),
    ("HTTPRoute rules: at most 16", edit(ROUTE, "spec.rules", [{"backendRefs": []}] * 17), "spec.rules",
     "at most 16 items"),
    ("HTTPRoute matches: at most 64 a rule", edit(ROUTE, "spec.rules.0.matches", [{}] * 65),
     "spec.rules.0.matches", "at most 64 items"),
    ("HTTPRoute matches: at most 128 in all", edit(ROUTE, "spec.rules", [{"matches": [{}] * 60}] * 3),
     "spec.rules", "at most 128 matches"),
    ("HTTPRoute hostnames: at most 16", edit(ROUTE, "spec.hostnames", [f"h{i}.example.com" for i in range(17)]),
     "spec.hostnames", "at most 16 items"),
    ("HTTPRoute redirect statusCode: 301 or 302",
     edit(ROUTE, "spec.rules.0", {"filters": [{"type": "RequestRedirect", "requestRedirect": {"statusCode": 308}}]}),
     "spec.rules.0.filters.0.requestRedirect.statusCode", "301 or 302"),
    ("HTTPRoute path: absolute for PathPrefix",
     edit(ROUTE, "spec.rules.0.matches", [{"path": {"type": "PathPrefix", "value": "api"}}]),
     "spec.rules.0.matches.0.path.value", "must be an absolute path"),
    ("HTTPRoute path RegularExpression: not supported by the class",
     edit(ROUTE, "spec.rules.0.matches", [{"path": {"type": "RegularExpression", "value": "/a.*"}}]),
     "spec.rules.0.matches.0.path.type", "RegularExpression is not supported"),
    ("HTTPRoute header RegularExpression: not supported by the class",
     edit(ROUTE, "spec.rules.0.matches", [{"headers": [{"type": "RegularExpression", "name": "x", "value": "a"}]}]),
     "spec.rules.0.matches.0.headers.0.type", "RegularExpression is not supported"),
    ("HTTPRoute filter: its type's field must be set",
     edit(ROUTE, "spec.rules.0.filters", [{"type": "RequestHeaderModifier"}]),
     "spec.rules.0.filters.0.requestHeaderModifier", "must be specified for a RequestHeaderModifier filter"),
    ("HTTPRoute filters: RequestRedirect and URLRewrite exclude each other",
     edit(ROUTE, "spec.rules.0", {"filters": [{"type": "RequestRedirect", "requestRedirect": {}},
                                              {"type": "URLRewrite", "urlRewrite": {}}]}),
     "spec.rules.0.filters", "either a RequestRedirect or a URLRewrite"),
    ("HTTPRoute ReplacePrefixMatch: needs one PathPrefix match",
     edit(ROUTE, "spec.rules.0", {"matches": [{"path": {"type": "Exact", "value": "/a"}}], "filters": [
         {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}],
         "backendRefs": [{"name": "web", "port": 80}]}),
     "spec.rules.0.filters.0", "ReplacePrefixMatch needs exactly one match"),
    ("HTTPRoute method: an HTTP method", edit(ROUTE, "spec.rules.0.matches", [{"method": "FETCH"}]),
     "spec.rules.0.matches.0.method", "'GET', 'HEAD'"),
    ("ReferenceGrant from: at least one", edit(GRANT, "spec.from", []), "spec.from", "at least 1 item"),
]

VALID = [
    edit(ING, "spec.rules.0.host", "*.example.com"),
    edit(ING, "spec", {"defaultBackend": BACKEND}),
    edit(ING, f"{PATH0}.pathType", "ImplementationSpecific"),
    edit(ING, f"{PATH0}.backend", {"resource": {"apiGroup": "k8s.example.com", "kind": "Bucket", "name": "b"}}),
    edit(SECRET, "data", {}) | {"stringData": {"tls.crt": CERT.decode(), "tls.key": KEY.decode()}},
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "o"}, "stringData": {"password": "x"}},
    CLASS, GW, ROUTE, GRANT,
    edit(GW, "spec.listeners.0", {"name": "h", "port": 443, "protocol": "HTTPS", "hostname": "*.example.com",
                                  "tls": {"certificateRefs": [{"name": "s"}]}}),
    edit(ROUTE, "spec.rules.0", {"matches": [{"path": {"type": "PathPrefix", "value": "/a"}}], "filters": [
        {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}],
        "backendRefs": [{"name": "web", "port": 80, "weight": 0}]}),
    edit(ROUTE, "spec.rules.0.backendRefs.0", {"name": "missing", "namespace": "elsewhere", "port": 80}),
]




@pytest.mark.parametrize(("rule", "doc", "field", "reason"), RULES, ids=[r[0] for r in RULES])
def test_the_api_refuses_it_and_so_does_testbed(tmp_path, rule, doc, field, reason):
    refused(tmp_path, doc, field, reason)


@pytest.mark.parametrize("doc", VALID, ids=range(len(VALID)))
def test_what_the_api_takes_loads(tmp_path, doc):
    assert len(load(tmp_path, doc)) == 1


def test_a_refused_secret_never_shows_its_key(tmp_path):
    text = str(refused(tmp_path, edit(SECRET, ("data", "tls.key"), b64(OTHER_KEY)), "data.tls.key", "belong"))
    assert b64(OTHER_KEY)[:40] not in text and OTHER_KEY.decode().splitlines()[1] not in text
