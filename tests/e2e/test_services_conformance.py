"""kube-proxy behaviours that upstream's own tests check and a first version missed, in both modes, with real
traffic: pods and nodes that dial an external frontend of an `externalTrafficPolicy: Local` Service get cluster
behaviour (kube-proxy's short-circuit); the nftables mode rejects what no Service port declares on a cluster IP
and drops what goes to an unallocated service address."""

import pytest
from svclab import EXT_IP, HERE, hits, node_addresses, service, sh

FAR = HERE / "services" / "far.yaml"


@pytest.fixture
def far(svc):
    svc.apply(FAR)
    yield svc
    svc.delete(FAR)


def _frontends(lab) -> dict[str, str]:
    """The external frontends a pod on node1, or node1 itself, dials."""
    far = service(lab, "far-local")
    return {"node port of its own node": f"{lab.plan.node('node1').underlay_ip}:30095",
            "external IP": f"{far.external_ips[0]}:80", "LoadBalancer IP": f"{far.lb_ips[0]}:80",
            "LoadBalancer IPv6": f"[{far.lb_ips[1]}]:80"}


def test_a_pod_without_a_local_endpoint_reaches_every_endpoint_of_a_local_service_keeping_its_source(far):
    client = far.pod("client")
    assert client.node == "node1" and {p.node for p in far.pods("default", app="far")} == {"node2", "node3"}
    for what, target in _frontends(far).items():
        answered = set(hits(far, "client", f"http://{target}/hostname", 16))
        assert answered == {"far-2", "far-3"}, what
        seen = far.probe("client", target)
        assert seen["result"] == "connected", what
        assert seen["client"].rsplit(":", 1)[0].strip("[]") in (client.ipv4, client.ipv6), what  # not masqueraded


def test_a_pod_on_another_node_gets_local_semantics_as_an_outside_client_does(far):
    """Only a node's own pods (those on its bridge, kube-proxy's BridgeInterface detector) are short-circuited:
    a pod that dials another node's node port reaches that node's endpoints, with its source kept."""
    got = hits(far, "client", f"http://{far.plan.node('node3').underlay_ip}:30095/clientip", 8)
    assert {c.rsplit(":", 1)[0] for c in got} == {far.pod("client").ipv4}
    assert set(hits(far, "client", f"http://{far.plan.node('node3').underlay_ip}:30095/hostname", 8)) == {"far-3"}


def test_the_node_itself_reaches_a_local_service_without_a_local_endpoint_masqueraded(far):
    node1 = far.plan.node("node1")
    for what, target in _frontends(far).items():
        code, out = sh(node1.container, "for i in $(seq 12); do curl -s -g --max-time 2 "
                                        f"http://{target}/clientip; echo; done")
        seen = {line.rsplit(":", 1)[0] for line in out.splitlines() if line}
        assert code == 0 and seen and seen <= node_addresses(far), (what, out)


def test_traffic_from_outside_keeps_local_semantics(far):
    node1, node2 = far.plan.node("node1"), far.plan.node("node2")
    assert far.probe("ext2", f"{node1.underlay_ip}:30095", timeout=1)["result"] == "timeout"
    got = far.probe("ext2", f"{node2.underlay_ip}:30095")
    assert got["result"] == "connected" and got["pod"] == "far-2"
    assert got["client"].rsplit(":", 1)[0] == EXT_IP  # the client's own address
    lb = far.probe("ext2", f"{service(far, 'far-local').lb_ips[0]}:80")
    assert lb["result"] == "connected" and lb["client"].rsplit(":", 1)[0] == EXT_IP


def test_a_cluster_ip_port_no_service_declares(svc):
    """nftables rejects at once, TCP and UDP alike (kube-proxy's cluster-ips check); iptables mode has no such
    rule upstream, and keeps it that way."""
    web = service(svc, "web").cluster_ips[0]
    tcp = svc.probe("client", f"{web}:81", timeout=3)
    udp = svc.probe("client", f"{web}:80", protocol="udp", timeout=3)  # port 80 is declared for TCP only
    if svc.plan.topology.kubeProxy.mode == "nftables":
        assert (tcp["result"], udp["result"]) == ("refused", "refused")
        assert tcp["ms"] < 1000 and udp["ms"] < 1000
    else:
        assert "connected" not in (tcp["result"], udp["result"])


def test_an_unallocated_service_address_is_dropped(svc):
    unallocated = "10.96.200.200"
    assert all(s.cluster_ips[:1] != [unallocated] for s in svc.plan.services)
    got = svc.probe("client", f"{unallocated}:80", timeout=1)
    assert got["result"] != "connected"
    if svc.plan.topology.kubeProxy.mode == "nftables":
        assert got["result"] == "timeout"
