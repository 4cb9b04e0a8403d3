"""`capture` writes pcaps that scapy reads, with the probe's packets, from a pod and from the fabric (VXLAN-
encapsulated); bad filters and interfaces are clear errors. `events` shows an apply's per-node syncs with what
they changed; `logs` reaches every component and lists what exists."""

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from scapy.all import IP, TCP, UDP, rdpcap

pytestmark = pytest.mark.topology("tests/e2e/topology.yaml")
HERE = Path(__file__).parent


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "testbed", *args], capture_output=True, check=False)


def _capture_while(lab, args: list[str], traffic) -> subprocess.CompletedProcess:
    """Runs a capture, and the traffic once it listens."""
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault("r", cli("capture", "--lab", lab.name, *args)))
    thread.start()
    for _ in range(12):  # tcpdump starts in under a second; the traffic repeats until the capture has it
        traffic()
        thread.join(timeout=0.6)
        if not thread.is_alive():
            break
    thread.join()
    return result["r"]


def test_a_pod_capture_is_a_pcap_with_the_probes_packets(testbed_lab, tmp_path):
    lab, out = testbed_lab, tmp_path / "pod.pcap"
    c = lab.pod("c")
    # -c 16: more than one connection's packets, as tcpdump may start in the middle of a probe's connection
    got = _capture_while(lab, ["a1", "--filter", f"tcp port 8080 and host {c.ipv4}", "-c", "16", "--duration", "8",
                               "-w", str(out)], lambda: lab.exec("a1", f"curl -s -m 1 http://{c.ipv4}:8080/"))
    assert got.returncode == 0, got.stderr
    packets = rdpcap(str(out))
    assert len(packets) == 16
    syn = next(p for p in packets if p[TCP].flags == "S")  # a probe's SYN, and its answer
    assert syn[IP].src == lab.pod("a1").ipv4 and syn[IP].dst == c.ipv4 and syn[TCP].dport == 8080
    assert any(p[TCP].flags == "SA" and p[IP].src == c.ipv4 and p[TCP].dport == syn[TCP].sport for p in packets)


def test_a_fabric_capture_holds_vxlan_encapsulated_packets(testbed_lab, tmp_path):
    lab, out = testbed_lab, tmp_path / "fabric.pcap"
    c = lab.pod("c")
    got = _capture_while(lab, ["fabric", "--filter", "udp port 8472", "-c", "2", "--duration", "8", "-w", str(out)],
                         lambda: lab.exec("a1", f"curl -s -m 1 http://{c.ipv4}:8080/"))
    assert got.returncode == 0, got.stderr
    outer = rdpcap(str(out))[0]
    assert outer[UDP].dport == 8472
    inner = outer[UDP].payload  # VXLAN, then the pods' own frame
    assert inner.payload[IP].dst == c.ipv4 or inner.payload[IP].src == c.ipv4


def test_capture_summaries_and_refusals(testbed_lab):
    lab = testbed_lab
    summary = _capture_while(lab, ["a1", "-c", "1", "--duration", "8", "--filter", "tcp"],
                             lambda: lab.exec("a1", f"curl -s -m 1 http://{lab.pod('b').ipv4}:8080/"))
    assert summary.returncode == 0 and b"Flags [S]" in summary.stdout
    bpf = cli("capture", "--lab", lab.name, "a1", "--filter", "tcp portx 8080", "-c", "1")
    assert bpf.returncode == 2 and b"syntax error" in bpf.stderr
    iface = cli("capture", "--lab", lab.name, "a1", "-i", "nope0", "-c", "1")
    assert iface.returncode == 3 and b"interfaces: eth0" in iface.stderr
    assert cli("capture", "--lab", lab.name, "ghost/pod", "-c", "1").returncode == 3


def test_events_show_an_applys_per_node_syncs(testbed_lab, tmp_path):
    lab = testbed_lab
    svc = tmp_path / "svc.yaml"
    svc.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: evented}\n"
                   "spec: {selector: {app: a}, ports: [{port: 80, targetPort: 8080}]}\n")
    lab.apply(svc)
    lab.delete(svc)
    got = cli("events", "--lab", lab.name, "--json", "--tail", "-1")
    events = [json.loads(line) for line in got.stdout.splitlines()]
    applied = [e for e in events if e["reason"] == "Started" and "apply -f" in e["message"] and "svc.yaml" in
               e["message"]]
    assert applied
    after = events[events.index(applied[-1]):]
    synced = [e for e in after if e["reason"] == "Synced" and e.get("installer") == "kube-proxy"]
    assert {e["node"] for e in synced} == {"node1", "node2", "node3"}
    assert all(e["duration"] >= 0 and ("partial sync" in e["message"] or "whole table" in e["message"])
               for e in synced)
    assert any(e["reason"] == "Step" and e["step"] == "Creating pods" for e in after)
    assert any(e["reason"] == "Ready" for e in after)
    human = cli("events", "--lab", lab.name, "--tail", "5")
    assert human.returncode == 0 and b"lab/" + lab.name.encode() in human.stdout


def test_logs_of_every_component(testbed_lab):
    lab = testbed_lab
    agent = cli("logs", "--lab", lab.name, "node1/agent", "--tail", "20")
    assert agent.returncode == 0 and b"done in" in agent.stdout
    assert cli("logs", "--lab", lab.name, "ext1/knot").returncode == 0
    unknown = cli("logs", "--lab", lab.name, "node9/bird")
    assert unknown.returncode == 3 and b"node1/agent" in unknown.stderr and b"ext1/knotd" in unknown.stderr


DESCRIBED = """apiVersion: v1
kind: Service
metadata: {name: described}
spec: {selector: {app: a}, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-from-b}
spec:
  podSelector: {matchLabels: {app: a}}
  ingress: [{from: [{podSelector: {matchLabels: {app: b}}}, {ipBlock: {cidr: 192.0.2.0/24}}]}]
"""


def test_describe_shows_what_touches_each_kind(testbed_lab, tmp_path):
    lab = testbed_lab
    (tmp_path / "d.yaml").write_text(DESCRIBED)
    lab.apply(tmp_path / "d.yaml")
    try:
        def describe(ref: str) -> dict:
            done = cli("describe", "--lab", lab.name, ref, "--json")
            assert done.returncode == 0, done.stderr
            return json.loads(done.stdout)

        pod = describe("default/a1")
        assert "default/described" in json.dumps(pod["services"]) and "default/a-from-b" in json.dumps(pod)
        svc = describe("svc/default/described")
        assert {e["pod"] for e in svc["endpoints"]} == {"default/a1", "default/a2"}
        assert svc["programmed"] == {n.name: True for n in lab.plan.nodes}
        pol = describe("netpol/default/a-from-b")
        text = json.dumps(pol)
        assert "default/a1" in text and "default/b" in text and "192.0.2.0/24" in text
        node = describe("node/node1")
        assert "default/a1" in json.dumps(node["pods"])
        missing = cli("describe", "--lab", lab.name, "svc/default/nope")
        assert missing.returncode == 3 and b"default/described" in missing.stderr
    finally:
        lab.delete(tmp_path / "d.yaml")
