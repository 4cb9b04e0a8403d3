"""Cluster DNS with real queries from pods (dig): the records of the Kubernetes DNS specification, negative answers,
search paths, forwarding to the external DNS server, live updates, a killed DNS server, and resolv.conf."""

from pathlib import Path

import docker
import pytest
from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

from testbed import state

pytestmark = pytest.mark.topology("tests/e2e/topology.yaml")
MANIFESTS = Path(__file__).parent / "manifests"
ZONE = "cluster.local"


@pytest.fixture(scope="module")
def lab(testbed_labs):
    lab = testbed_labs.get(Path(__file__).parent / "topology.yaml")
    lab.apply(MANIFESTS / "dns.yaml")
    yield lab
    lab.delete(MANIFESTS / "dns.yaml")


def dig(lab, query: str, *flags: str, pod: str = "a1") -> list[str]:
    out = lab.exec(pod, f"dig +short +time=2 +tries=2 {' '.join(flags)} {query}")
    assert out.exit_code == 0, out.stderr
    return out.stdout.split()


def status(lab, query: str, qtype: str = "A") -> tuple[str, int]:
    out = lab.exec("a1", f"dig +time=2 +tries=2 {query} {qtype}").stdout
    code = out.split("status: ", 1)[1].split(",", 1)[0]
    answers = int(out.split("ANSWER: ", 1)[1].split(",", 1)[0])
    return code, answers


def service(lab, name: str):
    return next(s for s in lab.plan.services if s.name == name)


def test_cluster_ip_services_have_a_and_aaaa_records(lab):
    web = service(lab, "web")
    assert dig(lab, f"web.default.svc.{ZONE}") == [web.cluster_ips[0]]
    assert dig(lab, f"web.default.svc.{ZONE}", "AAAA") == [web.cluster_ips[1]]
    assert dig(lab, f"WEB.Default.SVC.{ZONE}") == [web.cluster_ips[0]]  # names are case-insensitive


def test_the_search_path_resolves_short_names_from_another_namespace(lab):
    web = service(lab, "web")
    out = lab.exec("other/o1", "getent hosts web.default").stdout.split()
    assert out[0] in web.cluster_ips
    assert lab.exec("a1", "getent hosts web").stdout.split()[0] in web.cluster_ips


def test_headless_services_list_ready_endpoints_and_nxdomain_when_none(lab):
    peers = sorted(p.ipv4 for p in lab.pods("default", app="a"))
    assert sorted(dig(lab, f"peers.default.svc.{ZONE}")) == peers
    assert status(lab, f"nobody.default.svc.{ZONE}") == ("NXDOMAIN", 0)


def test_endpoint_hostnames_and_srv_records(lab):
    named = lab.pod("named")
    assert dig(lab, f"alpha.named-peers.default.svc.{ZONE}") == [named.ipv4]
    assert dig(lab, f"_http._tcp.named-peers.default.svc.{ZONE}", "SRV") == [
        "0", "100", "8080", f"alpha.named-peers.default.svc.{ZONE}."]
    web = dig(lab, f"_http._tcp.web.default.svc.{ZONE}", "SRV")
    assert web == ["0", "100", "80", f"web.default.svc.{ZONE}."]


def test_ptr_records_for_service_and_endpoint_ips(lab):
    web = service(lab, "web")
    for ip in web.cluster_ips:
        assert dig(lab, ip, "-x") == [f"web.default.svc.{ZONE}."]
    assert dig(lab, lab.pod("named").ipv4, "-x") == [f"alpha.named-peers.default.svc.{ZONE}."]


def test_external_name_is_a_cname_resolved_through_the_external_server(lab):
    assert dig(lab, f"outside.default.svc.{ZONE}") == ["www.example.com.", "203.0.113.11"]


def test_pod_records_version_and_negative_answers(lab):
    a1 = lab.pod("a1")
    assert dig(lab, f"{a1.ipv4.replace('.', '-')}.default.pod.{ZONE}") == [a1.ipv4]
    assert dig(lab, f"dns-version.{ZONE}", "TXT") == ['"1.1.0"']
    assert status(lab, f"web.default.svc.{ZONE}", "TXT") == ("NOERROR", 0)  # the name exists: no data
    assert status(lab, f"ghost.default.svc.{ZONE}") == ("NXDOMAIN", 0)


def test_names_outside_the_cluster_are_forwarded(lab):
    assert dig(lab, "www.example.com") == ["203.0.113.11"]
    assert lab.exec("a1", "getent hosts www.example.com").stdout.split()[0] in ("203.0.113.11", "2001:db8::b")


def test_a_new_service_is_in_dns_when_apply_returns(lab):
    lab.apply(MANIFESTS / "late-svc.yaml")
    try:
        assert dig(lab, f"late.default.svc.{ZONE}") == [service(lab, "late").cluster_ips[0]]
    finally:
        lab.delete(MANIFESTS / "late-svc.yaml")
    assert status(lab, f"late.default.svc.{ZONE}") == ("NXDOMAIN", 0)


def test_a_change_reaches_each_server_as_updates_that_outlive_its_restart(lab):
    """RFC 2136: the new Service's records go to each running server as updates (BIND keeps them in its
    journal; a reload or a zone replaced whole leaves none), and a server killed afterwards answers them."""
    servers = lab.pods("kube-system", **{"k8s-app": "kube-dns"})
    nodes = {p.key: docker.from_env().containers.get(lab.plan.node(p.node).container) for p in servers}
    lab.apply(MANIFESTS / "late-svc.yaml")
    try:
        ip = service(lab, "late").cluster_ips[0]
        for pod in servers:
            journal = f"/run/testbed/dns/{pod.hostname}/{ZONE}.dyn.jnl"
            assert nodes[pod.key].exec_run(["test", "-s", journal]).exit_code == 0, f"{pod.key}: no journal"
            assert dig(lab, f"late.default.svc.{ZONE}", f"@{pod.ipv4}") == [ip]
        victim = servers[0]
        assert nodes[victim.key].exec_run(["pkill", "-x", "named"]).exit_code == 0
        _restarted(lab, victim.name)
        assert _resolves_at(lab, victim.ipv4, f"late.default.svc.{ZONE}") == [ip]
    finally:
        lab.delete(MANIFESTS / "late-svc.yaml")
    for pod in servers:
        assert status(lab, f"late.default.svc.{ZONE} @{pod.ipv4}") == ("NXDOMAIN", 0)


def test_a_killed_dns_server_comes_back_and_the_other_replica_answers_meanwhile(lab):
    servers = lab.pods("kube-system", **{"k8s-app": "kube-dns"})
    assert len({p.node for p in servers}) == 2
    victim, other = servers
    node = docker.from_env().containers.get(lab.plan.node(victim.node).container)
    assert node.exec_run(["pkill", "-x", "named"]).exit_code == 0
    for _ in range(5):
        assert dig(lab, f"web.default.svc.{ZONE}", f"@{other.ipv4}")
    assert _restarted(lab, victim.name)["restarts"] >= 1
    assert _resolves_at(lab, victim.ipv4) == [service(lab, "web").cluster_ips[0]]


def test_a_server_that_stops_answering_leaves_the_service_until_it_answers_again(lab):
    servers = lab.pods("kube-system", **{"k8s-app": "kube-dns"})
    victim = servers[0]
    node = docker.from_env().containers.get(lab.plan.node(victim.node).container)
    pid = node.exec_run(["sh", "-c", f"ip netns pids {victim.netns} | xargs -r ps -o pid=,comm= -p | "
                                     "awk '$2 == \"named\" {print $1}'"]).output.decode().split()
    assert pid, "the DNS server's process is not in its pod"
    node.exec_run(["kill", "-STOP", *pid])
    try:
        assert _synced(lab, victim.key, False)
        # every query through the ClusterIP, one try each, reaches the server that answers
        out = lab.exec("a1", f"for i in $(seq 20); do dig +short +time=1 +tries=1 web.default.svc.{ZONE} "
                             "|| echo FAILED; done").stdout.split()
        assert out == [service(lab, "web").cluster_ips[0]] * 20, out
    finally:
        node.exec_run(["kill", "-CONT", *pid])
    assert _synced(lab, victim.key, True)
    assert lab.exec("a1", f"dig +short +time=1 +tries=1 @{victim.ipv4} web.default.svc.{ZONE}").exit_code == 0


@retry(retry=retry_if_result(lambda got: not got), stop=stop_after_delay(10), wait=wait_fixed(0.05))
def _synced(lab, pod: str, ready: bool) -> bool:
    """The lab's controller has synced every node's rules with the pod's readiness (its state records it)."""
    st = state.load(lab.name)
    return bool(st and st.readiness.get(pod) is ready)


@retry(retry=retry_if_result(lambda got: not got), stop=stop_after_delay(10), wait=wait_fixed(0.1))
def _resolves_at(lab, server: str, name: str = f"web.default.svc.{ZONE}") -> list[str]:
    out = lab.exec("a1", f"dig +short +time=1 +tries=1 @{server} {name}")
    return out.stdout.split() if out.exit_code == 0 else []


@retry(retry=retry_if_result(lambda row: not (row["ready"] and row["restarts"] >= 1)), stop=stop_after_delay(20),
       wait=wait_fixed(0.1))
def _restarted(lab, name: str) -> dict:
    return next(p for p in lab.status()["pods"] if p["name"] == name)


def test_resolv_conf_follows_dns_policy_and_config(lab):
    assert lab.exec("custom-dns", "cat /etc/resolv.conf").stdout == (
        "search example.com\nnameserver 203.0.113.10\noptions ndots:1\n")
    assert lab.exec("merged-dns", "cat /etc/resolv.conf").stdout == (
        f"search default.svc.{ZONE} svc.{ZONE} {ZONE} example.com\nnameserver 10.96.0.10\noptions ndots:5 edns0\n")
    assert dig(lab, "www", "+search", pod="custom-dns") == ["203.0.113.11"]  # www.example.com by the search path
