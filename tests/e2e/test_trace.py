"""`testbed trace` follows one real packet with nftables tracing: a ClusterIP flow names its Service and the
endpoint chosen (both kube-proxy modes), a flow to a Service without endpoints shows the reject, a cross-node
flow shows the overlay hop (vxlan, host-gw, bgp), a flow a policy denies names the policy."""

import json
import subprocess
import sys

import pytest
from routedlab import MODES
from svclab import service

from testbed.observe.trace import trace


def steps(report: dict) -> list[tuple[str, str, str]]:
    return [(h["machine"], s["kind"], s["text"]) for h in report["hops"] for s in h["steps"]]


def test_a_cluster_ip_flow_names_the_service_and_the_endpoint_it_chose(svc):
    report = trace(svc.plan, "client", "svc/default/web:80")
    assert report["end"] == "delivered" and report["result"] == "connected", report["summary"]
    found = steps(report)
    assert ("node1", "service", f"Service default/web:http matched {service(svc, 'web').cluster_ips[0]}:80/tcp") in \
        [(m, k, t.split(" (")[0]) for m, k, t in found]
    (dnat,) = [t for m, k, t in found if k == "dnat"]
    chosen = next(p for p in svc.pods("default", app="web") if p.name == report["answeredBy"])
    assert f"DNAT to {chosen.ipv4}:8080 (pod {chosen.key} on {chosen.node})" == dnat
    assert any(k == "deliver" and chosen.key in t for _, k, t in found)
    assert report["model"]["allowed"] and report["model"]["agrees"]


def test_a_service_without_endpoints_shows_the_reject(svc):
    report = trace(svc.plan, "client", "svc/default/nobody:80")
    assert report["end"] == "rejected" and report["result"] == "refused"
    assert any(k == "reject" and "Service default/nobody" in t and "no ready endpoint" in t
               for _, k, t in steps(report))


@pytest.mark.parametrize("mode", MODES)
def test_a_cross_node_flow_shows_the_overlay_hop(routed, mode):
    lab = routed(mode)
    c = lab.pod("c")
    report = trace(lab.plan, "a", f"{c.ipv4}:8080")
    assert report["end"] == "delivered" and report["answeredBy"] == "c", report["summary"]
    machines = [h["machine"] for h in report["hops"]]
    assert machines == ["pod default/a", "node1", "node3"]
    (route,) = [t for m, k, t in steps(report) if m == "node1" and k == "route"]
    node3 = lab.plan.node("node3")
    want = {"vxlan": f"VXLAN to node3 ({node3.underlay_ip})", "host-gw": f"via {node3.underlay_ip} dev eth0 (host-gw)",
            "bgp": f"via {node3.underlay_ip} dev eth0 (bird)"}[mode]
    assert want in route, route


def test_a_flow_a_policy_denies_names_the_policy(modes, tmp_path):
    lab = modes("vxlan", "nftables")
    deny = tmp_path / "deny.yaml"
    deny.write_text("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-a, namespace: x}\n"
                    "spec: {podSelector: {matchLabels: {pod: a}}, policyTypes: [Ingress]}\n")
    lab.apply(deny)
    try:
        dst = lab.pod("x/a")
        report = trace(lab.plan, "y/b", f"{dst.ipv4}:80", timeout=1)
        assert report["end"] == "dropped" and report["result"] == "timeout"
        (drop,) = [t for _, k, t in steps(report) if k == "drop"]
        assert "dropped by NetworkPolicy: its ingress is isolated" in drop and "x/deny-a" in drop
        assert report["model"] == {**report["model"], "allowed": False, "agrees": True}
        allow = tmp_path / "allow.yaml"  # its sets are shared with others alike; the rule keeps its name
        allow.write_text("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-y, "
                         "namespace: x}\nspec: {podSelector: {matchLabels: {pod: a}}, policyTypes: [Ingress], "
                         "ingress: [{from: [{namespaceSelector: {matchLabels: "
                         "{kubernetes.io/metadata.name: y}}}]}]}\n")
        lab.apply(allow)
        report = trace(lab.plan, "y/b", f"{dst.ipv4}:80", timeout=1)
        assert report["end"] == "delivered", report["summary"]
        assert any(k == "policy" and "admitted by NetworkPolicy x/allow-y (ingress rule 1)" in t
                   for _, k, t in steps(report)), steps(report)
    finally:
        lab.delete(deny)
        if (tmp_path / "allow.yaml").exists():
            lab.delete(tmp_path / "allow.yaml")


def test_trace_from_the_command_line_and_to_nowhere(routed):
    lab = routed("vxlan")
    cli = subprocess.run([sys.executable, "-m", "testbed", "trace", "--lab", lab.name, "a", "10.244.99.9:80",
                          "--json", "--timeout", "1"], capture_output=True, text=True, check=False)
    report = json.loads(cli.stdout)
    assert cli.returncode == 1 and report["end"] == "no route"
    assert "Traceback" not in cli.stderr and "no route" in report["summary"]
    human = subprocess.run([sys.executable, "-m", "testbed", "trace", "--lab", lab.name, "a",
                            f"{lab.pod('b').ipv4}:8080"], capture_output=True, text=True, check=False)
    assert human.returncode == 0 and "delivered to" in human.stdout and "VXLAN to node2" in human.stdout


HOLD = """import socket, sys, time  # testbed-hold-ports
held = []
for port in range(61000, 65536):
    s = socket.socket()
    s.bind(("0.0.0.0", port))
    held.append(s)
open(sys.argv[1], "w").close()
time.sleep(30)
"""


def test_a_source_that_cannot_have_its_port_says_so_and_then_traces(routed, tmp_path):
    """Every port a trace may take held in the source pod (above the ephemeral range, so that none of the pod's
    own connections holds one): the send fails, and the report says why rather than "not seen"."""
    lab = routed("vxlan")
    marker = f"/tmp/held-{tmp_path.name}"
    wait = 'python3 -c "$1" "$2" > /dev/null 2>&1 & i=0; while [ ! -e "$2" ] && [ $i -lt 200 ]; do sleep 0.05; ' \
           'i=$((i+1)); done; [ -e "$2" ]'
    assert lab.exec("a", ["sh", "-c", wait, "sh", HOLD, marker]).exit_code == 0
    try:
        report = trace(lab.plan, "a", f"{lab.pod('b').ipv4}:8080", timeout=1)
        assert report["result"] == "error" and report["end"] == "lost"
        assert report["summary"] == "the source could not send it: Address already in use"
    finally:
        lab.exec("a", ["pkill", "-f", "testbed-hold-ports"])
        lab.exec("a", ["rm", "-f", marker])
    report = trace(lab.plan, "a", f"{lab.pod('b').ipv4}:8080", timeout=1)
    assert report["end"] == "delivered" and report["result"] == "connected", report["summary"]
