"""NetworkPolicy cases from the Kubernetes docs and the upstream e2e suite (test/e2e/network/netpol), on the
upstream model: namespaces x, y, z with pods a, b, c (label pod=<name>), each serving TCP and UDP on 80 and 81.

Each case's expectation is written from the spec, cell by cell, independently of testbed's evaluator: the unit
tests hold the evaluator to it, the e2e tests hold the datapath to it. A pod reaching itself is always allowed
(NetworkPolicy cannot block it); the callers add that."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

NAMESPACES = ["x", "y", "z"]
PODS = [f"{ns}/{p}" for ns in NAMESPACES for p in "abc"]
PORTS = [80, 81]
PROTOCOLS = ["tcp", "udp"]
DNS_EGRESS = {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                      "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
              "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}

Allows = Callable[[str, str, str, int], bool]  # (from ns/pod, to ns/pod, protocol, port) → allowed


@dataclass
class Case:
    name: str
    policies: Callable[[dict[str, str]], list[dict[str, Any]]]  # pod IPs (ns/pod → IPv4) → the policies
    allows: Allows
    manifests: list[dict[str, Any]] = field(default_factory=list)  # applied with the policies (relabels)


def pol(name: str, ns: str, pods: dict[str, Any] | None = None, ingress: list[Any] | None = None,
        egress: list[Any] | None = None, types: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": pods or {}}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    if types is not None:
        spec["policyTypes"] = types
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def ns_of(ref: str) -> str:
    return ref.split("/")[0]


def pod_of(ref: str) -> str:
    return ref.split("/")[1]


def fixed(*policies: dict[str, Any]) -> Callable[[dict[str, str]], list[dict[str, Any]]]:
    return lambda _ips: list(policies)


A_IN_X = {"matchLabels": {"pod": "a"}}


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"ns": name, **labels}}}


CASES = [
    Case("deny-all-ingress", fixed(pol("deny", "x")),
         lambda s, d, pr, po: ns_of(d) != "x"),
    Case("deny-all-egress", fixed(pol("deny", "x", types=["Egress"])),
         lambda s, d, pr, po: ns_of(s) != "x"),
    Case("deny-all-both-ways", fixed(pol("deny", "x", types=["Ingress", "Egress"])),
         lambda s, d, pr, po: ns_of(s) != "x" and ns_of(d) != "x"),
    Case("deny-all-then-allow-all-ingress", fixed(pol("deny", "x"), pol("all", "x", ingress=[{}])),
         lambda s, d, pr, po: True),
    Case("allow-from-same-namespace", fixed(pol("same", "x", ingress=[{"from": [{"podSelector": {}}]}])),
         lambda s, d, pr, po: ns_of(d) != "x" or ns_of(s) == "x"),
    Case("allow-from-namespace-y", fixed(pol("from-y", "x", A_IN_X, ingress=[
        {"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}])),
         lambda s, d, pr, po: d != "x/a" or ns_of(s) == "y"),
    Case("allow-from-namespaces-not-in-y", fixed(pol("not-y", "x", A_IN_X, ingress=[
        {"from": [{"namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "NotIn",
                                                               "values": ["y"]}]}}]}])),
         lambda s, d, pr, po: d != "x/a" or ns_of(s) != "y"),
    Case("pod-and-namespace-selector", fixed(pol("and", "x", A_IN_X, ingress=[
        {"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "b"}}}]}
    ])), lambda s, d, pr, po: d != "x/a" or s == "y/b"),
    Case("pod-or-namespace-selector", fixed(pol("or", "x", A_IN_X, ingress=[
        {"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}, {"podSelector": {"matchLabels": {"pod": "b"}}}]}
    ])), lambda s, d, pr, po: d != "x/a" or ns_of(s) == "y" or s == "x/b"),
    Case("pod-selector-match-expressions", fixed(pol("expr", "x", A_IN_X, ingress=[
        {"from": [{"podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["b"]}]}}]}])),
         lambda s, d, pr, po: d != "x/a" or s == "x/b"),
    Case("namespace-selector-exists", fixed(pol("exists", "x", A_IN_X, ingress=[
        {"from": [{"namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "Exists"}]},
                   "podSelector": {"matchExpressions": [{"key": "pod", "operator": "DoesNotExist"}]}}]}])),
         lambda s, d, pr, po: d != "x/a"),
    Case("ingress-ip-block-with-except", lambda ips: [pol("cidr", "x", A_IN_X, ingress=[
        {"from": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": [f"{ips['y/b']}/32", f"{ips['z/c']}/32"]}}]}])],
         lambda s, d, pr, po: d != "x/a" or s not in ("y/b", "z/c")),
    Case("egress-ip-block-with-except", lambda ips: [pol("cidr", "x", A_IN_X, types=["Egress"], egress=[
        {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": [f"{ips['x/b']}/32"]}}]}])],
         lambda s, d, pr, po: s != "x/a" or d != "x/b"),
    Case("named-port-tcp", fixed(pol("named", "x", A_IN_X, ingress=[{"ports": [{"port": "serve-81-tcp"}]}])),
         lambda s, d, pr, po: d != "x/a" or (pr, po) == ("tcp", 81)),
    Case("named-port-udp-from-namespace", fixed(pol("named-udp", "x", A_IN_X, ingress=[
        {"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
         "ports": [{"port": "serve-80-udp", "protocol": "UDP"}]}])),
         lambda s, d, pr, po: d != "x/a" or (ns_of(s) == "y" and (pr, po) == ("udp", 80))),
    Case("numbered-port-udp", fixed(pol("udp81", "x", A_IN_X, ingress=[{"ports": [{"port": 81,
                                                                                   "protocol": "UDP"}]}])),
         lambda s, d, pr, po: d != "x/a" or (pr, po) == ("udp", 81)),
    Case("end-port-range", fixed(pol("range", "x", A_IN_X, ingress=[{"ports": [{"port": 80, "endPort": 81}]}])),
         lambda s, d, pr, po: d != "x/a" or pr == "tcp"),
    Case("egress-named-port", fixed(pol("out-named", "x", A_IN_X, types=["Egress"], egress=[
        {"ports": [{"port": "serve-80-tcp"}]}])),
         lambda s, d, pr, po: s != "x/a" or (pr, po) == ("tcp", 80)),
    Case("egress-to-namespace-z", fixed(pol("to-z", "x", types=["Egress"], egress=[
        {"to": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}]}])),
         lambda s, d, pr, po: ns_of(s) != "x" or ns_of(d) == "z"),
    Case("egress-deny-with-dns-allowed", fixed(pol("dns-only-and-y", "x", types=["Egress"], egress=[
        DNS_EGRESS, {"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}])),
         lambda s, d, pr, po: ns_of(s) != "x" or ns_of(d) == "y"),
    Case("union-of-two-policies", fixed(
        pol("from-y", "x", A_IN_X, ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]),
        pol("from-z", "x", A_IN_X, ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}]}])),
         lambda s, d, pr, po: d != "x/a" or ns_of(s) in ("y", "z")),
    Case("ingress-and-egress-together", fixed(pol("both", "y", {"matchLabels": {"pod": "b"}}, ingress=[
        {"from": [{"podSelector": {}}], "ports": [{"port": 80, "protocol": "TCP"}]}], egress=[
        {"to": [{"namespaceSelector": {"matchLabels": {"ns": "x"}}, "podSelector": {"matchLabels": {"pod": "c"}}}]}])),
         lambda s, d, pr, po: (d != "y/b" or (ns_of(s) == "y" and (pr, po) == ("tcp", 80)))
         and (s != "y/b" or d == "x/c")),
    Case("namespace-relabelled", fixed(pol("team", "x", A_IN_X, ingress=[
        {"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]}])),
         lambda s, d, pr, po: d != "x/a" or ns_of(s) == "z", manifests=[namespace("z", team="blue")]),
]

BY_NAME = {c.name: c for c in CASES}


def expect(case: Case, src: str, dst: str, protocol: str, port: int) -> bool:
    return src == dst or case.allows(src, dst, protocol, port)
