"""NodeLocal DNSCache with real queries: pods ask the cache on their node first, it answers cluster and outside
names, its traffic leaves no conntrack entry while its forwards to kube-dns go over TCP, pods still resolve
when it hangs, and turning it off leaves nothing of it."""

import uuid
from pathlib import Path

import docker
import pytest
import yaml

from testbed import lab as labs
from testbed.installers.nodelocaldns import ADDRESS, FAMILY, TABLE
from testbed.observe.diagnose import diagnose

pytestmark = pytest.mark.topology("tests/e2e/nodelocal.yaml")
HERE = Path(__file__).parent


def node(lab, name: str = "node1"):
    return docker.from_env().containers.get(lab.plan.node(name).container)


def in_node(lab, cmd: str, name: str = "node1") -> tuple[int, str]:
    got = node(lab, name).exec_run(["sh", "-c", cmd])
    return got.exit_code, got.output.decode()


def test_pods_ask_the_cache_on_their_node_first(testbed_lab):
    lab = testbed_lab
    resolv = lab.exec("client", "cat /etc/resolv.conf").stdout.split("\n")
    servers = [line.split()[1] for line in resolv if line.startswith("nameserver")]
    assert servers == [ADDRESS, lab.plan.topology.dns_ip()]
    web = next(s for s in lab.plan.services if s.name == "web")
    got = lab.exec("client", "getent hosts web.default.svc.cluster.local")
    assert got.exit_code == 0 and got.stdout.split()[0] == web.cluster_ips[0], got.stdout
    direct = lab.exec("client", f"dig +short +time=2 +tries=1 @{ADDRESS} web.default.svc.cluster.local")
    assert direct.stdout.split() == [web.cluster_ips[0]]
    outside = lab.exec("client", f"dig +short +time=2 +tries=1 @{ADDRESS} www.example.com")
    assert outside.stdout.split() == [next(h.ip for h in lab.plan.externals if h.role == "web")]


def test_its_traffic_skips_conntrack_and_it_asks_kube_dns_over_tcp(testbed_lab):
    lab = testbed_lab
    code, table = in_node(lab, f"nft list table {FAMILY} {TABLE}")
    assert code == 0 and "notrack" in table
    in_node(lab, "conntrack -F")
    fresh = f"nx-{uuid.uuid4().hex[:8]}.default.svc.cluster.local"  # not cached: the cache must ask kube-dns
    got = lab.exec("client", f"dig +time=2 +tries=1 @{ADDRESS} {fresh}")
    assert "status: NXDOMAIN" in got.stdout, got.stdout
    _, udp = in_node(lab, f"conntrack -L -d {ADDRESS} 2>/dev/null; conntrack -L -s {ADDRESS} 2>/dev/null")
    assert ADDRESS not in udp, udp
    _, tcp = in_node(lab, "conntrack -L -p tcp --dport 53 2>/dev/null")
    assert f"dst={lab.plan.topology.dns_ip()}" in tcp, tcp


def _answers(lab) -> dict[str, str]:
    """diagnose's "NodeLocal DNSCache answers" check, node by node: ok or fail (its dig, run by the node's agent)."""
    return {f["subject"]: f["status"] for f in diagnose(lab.name)["findings"]
            if f["check"] == "NodeLocal DNSCache answers"}


def test_pods_fall_back_to_kube_dns_when_the_cache_hangs(testbed_lab):
    lab = testbed_lab
    assert set(_answers(lab).values()) == {"ok"}
    code, _ = in_node(lab, "pkill -STOP -f '[n]amed -g -n 1'")
    assert code == 0
    try:
        assert lab.exec("client", f"dig +short +time=1 +tries=1 @{ADDRESS} web.default.svc.cluster.local").exit_code
        got = lab.exec("client", "getent hosts web.default.svc.cluster.local")
        assert got.exit_code == 0 and got.stdout.split(), got.stdout
        assert _answers(lab)["node1"] == "fail"  # diagnose names the node whose cache hangs
    finally:
        in_node(lab, "pkill -CONT -f '[n]amed -g -n 1'")


def test_turning_it_off_leaves_nothing(testbed_labs, tmp_path):
    topo = yaml.safe_load((HERE / "nodelocal.yaml").read_text())
    topo["name"] = "e2e-nodelocal-off"
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(topo))
    lab = testbed_labs.get(path)
    assert in_node(lab, f"nft list table {FAMILY} {TABLE}")[0] == 0
    topo["dns"] = {"nodeLocalCache": False}
    path.write_text(yaml.safe_dump(topo))
    labs.up(path, say=lambda _: None)
    lab = type(lab)(lab.name)
    for name in ("node1", "node2"):
        assert in_node(lab, f"nft list table {FAMILY} {TABLE}", name)[0] != 0
        assert ADDRESS not in in_node(lab, "ip -4 addr show dev lo", name)[1]
        assert in_node(lab, "pgrep -f '[n]amed -g -n 1'", name)[0] != 0
    servers = [line.split()[1] for line in lab.exec("client", "cat /etc/resolv.conf").stdout.split("\n")
               if line.startswith("nameserver")]
    assert servers == [lab.plan.topology.dns_ip()]
    got = lab.exec("client", "getent hosts web.default.svc.cluster.local")
    assert got.exit_code == 0
