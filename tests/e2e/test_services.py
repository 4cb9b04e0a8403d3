"""Services through the kube-proxy installer, with real traffic, in both modes (the lab is switched between them
with `up`, which also tests that the other mode's rules go)."""

import json

from svclab import EXT_IP, HERE, hits, node_addresses, service, sh
from tenacity import retry, retry_if_result, stop_after_attempt, wait_fixed

from testbed.installers.kube_proxy.view import node_view
from testbed.pytest_plugin import Lab


def test_cluster_ip_spreads_over_every_endpoint_and_keeps_the_source(svc):
    web = service(svc, "web")
    got = hits(svc, "client", f"http://{web.cluster_ips[0]}/hostname", 300)
    replicas = {p.name for p in svc.pods("default", app="web")}
    assert set(got) == replicas
    assert max(got.values()) <= 0.6 * 300
    assert svc.probe("client", "svc/default/web:80")["client"].rsplit(":", 1)[0] == svc.pod("client").ipv4
    v6 = svc.probe("client", f"[{web.cluster_ips[1]}]:80")
    assert v6["result"] == "connected" and v6["client"].rsplit(":", 1)[0] == f"[{svc.pod('client').ipv6}]"


def test_udp_service_answers(svc):
    got = svc.probe("client", "svc/default/web:53", protocol="udp")
    assert got["result"] == "connected" and got["pod"].startswith("web-")


def test_node_port_answers_on_every_node_ip(svc):
    for node in svc.plan.nodes:
        got = svc.probe("ext2", f"{node.underlay_ip}:30080")
        assert got["result"] == "connected" and got["pod"].startswith("web-")
        assert got["client"].rsplit(":", 1)[0] in node_addresses(svc)  # Cluster policy: masqueraded


def test_load_balancer_ips_are_reached_from_outside(svc):
    lb = service(svc, "web-lb")
    for ip in lb.lb_ips:
        got = svc.probe("ext2", f"[{ip}]:80" if ":" in ip else f"{ip}:80")
        assert got["result"] == "connected" and got["pod"].startswith("web-")


def test_external_traffic_policy_local_keeps_the_client_ip_and_drops_without_a_local_endpoint(svc):
    local = service(svc, "web-local")
    assert svc.probe("ext2", f"{local.lb_ips[0]}:80")["client"].rsplit(":", 1)[0] == EXT_IP
    one = svc.pods("default", app="one")[0]
    assert svc.probe("ext2", f"{svc.plan.node(one.node).underlay_ip}:30090")["client"].rsplit(":", 1)[0] == EXT_IP
    elsewhere = next(n for n in svc.plan.nodes if n.name != one.node)
    assert svc.probe("ext2", f"{elsewhere.underlay_ip}:30090", timeout=1)["result"] == "timeout"


def test_internal_traffic_policy_local_uses_the_clients_node_only(svc):
    itl = service(svc, "web-itl")
    mine = {p.name for p in svc.pods("default", app="web") if p.node == "node1"}
    got = hits(svc, "client", f"http://{itl.cluster_ips[0]}/hostname", 20)
    assert set(got) == mine


def test_traffic_distribution_prefers_the_clients_node_then_its_zone(svc):
    """PreferSameNode: the client's node's endpoints, else its zone's; PreferClose (PreferSameZone): its zone's,
    else all. A NodePort-less Service each; the web Deployment has a pod on every node."""
    near = HERE / "services" / "near.yaml"
    svc.apply(near)
    try:
        web = {p.name: p.node for p in svc.pods("default", app="web")}
        zone = {"node1": "a", "node2": "a", "node3": "b"}

        def got(client: str, name: str) -> set[str]:
            return set(hits(svc, client, f"http://{service(svc, name).cluster_ips[0]}/hostname", 24))

        for client, node in (("client", "node1"), ("client3", "node3")):
            assert got(client, "web-near") == {p for p, n in web.items() if n == node}
            assert got(client, "web-zone") == {p for p, n in web.items() if zone[n] == zone[node]}
        # no `one` pod on node1: the one in its zone, on node2
        assert got("client", "one-near") == {p.name for p in svc.pods("default", app="one")}
        shown = {s["name"]: s["trafficDistribution"] for s in svc.status()["services"]}
        assert (shown["web-near"], shown["web-zone"], shown["web"]) == ("PreferSameNode", "PreferSameZone", None)
    finally:
        svc.delete(near)


def test_a_service_without_endpoints_is_refused_at_once(svc):
    got = svc.probe("client", "svc/default/nobody:80", timeout=5)
    assert got["result"] == "refused"


@retry(retry=retry_if_result(lambda changed: not changed), stop=stop_after_attempt(10), wait=wait_fixed(2.2))
def _released(lab: Lab, url: str, first: str) -> bool:
    return lab.exec("client", f"curl -s --max-time 2 {url}").stdout != first


def test_client_ip_affinity_sticks_and_releases_after_its_timeout(svc):
    url = f"http://{service(svc, 'sticky').cluster_ips[0]}/hostname"
    got = hits(svc, "client", url, 20)
    assert len(got) == 1
    assert _released(svc, url, next(iter(got)))  # each try comes after the 2 s timeout ran out


def test_hairpin_traffic_to_its_own_service_is_masqueraded(svc):
    pod = svc.pods("default", app="web")[0]
    ip = service(svc, "web").cluster_ips[0]
    out = svc.exec(pod.key, f"for i in $(seq 40); do curl -s --max-time 2 http://{ip}/ | tr -d '\\n'; echo; done")
    answers = [json.loads(line) for line in out.stdout.splitlines() if line]
    own = [a for a in answers if a["pod"] == pod.name]
    assert own, "never landed on itself in 40 tries"
    assert all(a["client"].rsplit(":", 1)[0] != pod.ipv4 for a in own)


def test_traffic_from_a_non_pod_source_to_a_cluster_ip_is_masqueraded(svc):
    node1 = svc.plan.node("node1")
    ip = service(svc, "web").cluster_ips[0]
    code, out = sh(node1.container, f"for i in 1 2 3 4 5 6; do curl -s --max-time 2 --interface {node1.underlay_ip} "
                                    f"http://{ip}/clientip; echo; done")
    seen = {line.rsplit(":", 1)[0] for line in out.splitlines() if line}
    assert code == 0 and seen and node1.underlay_ip not in seen


UDP_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("", 40404)); s.settimeout(0.5)
answers = []
for _ in range(int(sys.argv[2])):
    s.sendto(b"hostname", (sys.argv[1], 53))
    try:
        answers.append(s.recv(100).decode())
    except socket.timeout:
        answers.append("-")
print(" ".join(answers))
"""


def test_udp_flows_move_off_a_removed_endpoint(svc):
    ip = service(svc, "udp").cluster_ips[0]
    first = svc.exec("client", ["python3", "-c", UDP_CLIENT, ip, "3"]).stdout.split()
    assert len(set(first)) == 1 and first[0].startswith("udp")  # one flow, one endpoint
    gone = HERE / "services" / f"{first[0].replace('udp', 'udp-')}.yaml"
    svc.delete(gone)
    try:
        after = svc.exec("client", ["python3", "-c", UDP_CLIENT, ip, "3"]).stdout.split()
        assert first[0] not in after and after[0] != "-"  # the stale conntrack entry was flushed
    finally:
        svc.apply(gone)


def test_endpoints_follow_a_deployment_scaled_3_1_4(svc):
    url = f"http://{service(svc, 'web').cluster_ips[0]}/hostname"
    try:
        for replicas in (1, 4):
            svc.apply(HERE / "services" / f"web-{replicas}.yaml")
            names = {p.name for p in svc.pods("default", app="web")}
            assert len(names) == replicas
            assert set(hits(svc, "client", url, 12 * replicas)) == names
    finally:
        svc.apply(HERE / "services" / "web-3.yaml")


def _held(lab: Lab) -> dict[str, str]:
    """What shows that a node's rules were changed in place, not reloaded: the nftables table's handle, or the
    packet counters of the web Service's iptables chain (a whole restore starts them at 0)."""
    web = next(e for e in node_view(lab.plan, lab.plan.nodes[0]).entries if e.service == "default/web")
    out = {}
    for node in lab.plan.nodes:
        if lab.plan.topology.kubeProxy.mode == "nftables":
            out[node.name] = sh(node.container, "nft -a list table inet testbed-proxy | head -1")[1]
        else:
            chain = f"KUBE-SVC-{web.id.upper()}"
            out[node.name] = sh(node.container, f"iptables -t nat -L {chain} -v -x | awk 'NR > 2 {{n += $1}} "
                                                "END {{print n + 0}}'")[1].strip()
    return out


def test_a_later_sync_changes_the_rules_in_place(svc):
    """A Service added then removed, its endpoint count already in use: only its elements (or its chains) are
    sent, and it answers, then is refused, while the rules already there stay as they were."""
    web, late = service(svc, "web").cluster_ips[0], HERE / "services" / "late.yaml"
    assert len(hits(svc, "client", f"http://{web}/hostname", 3)) >= 1
    before = _held(svc)
    assert all(before.values()) and any(v != "0" for v in before.values()), before  # the client's node counted
    svc.apply(late)
    try:
        ip = service(svc, "late").cluster_ips[0]
        answered = set(hits(svc, "client", f"http://{ip}:8081/hostname", 24))
        assert answered == {p.name for p in svc.pods("default", app="web")}
    finally:
        svc.delete(late)
    assert svc.exec("client", ["curl", "-s", "--max-time", "2", f"http://{ip}:8081/"]).exit_code != 0
    assert _held(svc) == before


def test_switching_kube_proxy_mode_removes_the_other_modes_rules(services):
    lab = services("iptables")
    for node in lab.plan.nodes:
        assert sh(node.container, "nft list table inet testbed-proxy")[0] != 0
        assert "KUBE-SERVICES" in sh(node.container, "iptables -t nat -S")[1]
    lab = services("nftables")
    for node in lab.plan.nodes:
        assert sh(node.container, "nft list table inet testbed-proxy")[0] == 0
        assert "KUBE-" not in sh(node.container, "iptables -t nat -S; ip6tables -t nat -S")[1]
