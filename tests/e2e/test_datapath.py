"""Real packets through the lab: pod↔pod on one node and across nodes, v4 and v6, TCP and UDP, node→pod."""

import time
from ipaddress import ip_address

import pytest
from conftest import curl, url

from testbed.agent.pods import host_veth

pytestmark = pytest.mark.topology("tests/e2e/topology.yaml")


def test_same_node_pod_to_pod_keeps_source_ip(lab):
    a1, a2 = lab.pod("a1"), lab.pod("a2")
    assert a1.node == a2.node
    assert curl(lab, "a1", url(a2.ipv4, 8080, "/clientip")).rsplit(":", 1)[0] == a1.ipv4


@pytest.mark.parametrize("target", ["b", "c"])
def test_cross_node_pod_to_pod_v4_without_nat(lab, target):
    src, dst = lab.pod("a1"), lab.pod(target)
    assert src.node != dst.node
    assert curl(lab, "a1", url(dst.ipv4, 8080, "/hostname")) == target
    assert curl(lab, "a1", url(dst.ipv4, 8080, "/clientip")).rsplit(":", 1)[0] == src.ipv4


@pytest.mark.parametrize("target", ["a2", "c"])
def test_pod_to_pod_v6(lab, target):
    src, dst = lab.pod("a1"), lab.pod(target)
    assert dst.ipv6
    assert curl(lab, "a1", url(dst.ipv6, 8080, "/clientip")) .rsplit(":", 1)[0] == f"[{src.ipv6}]"


def test_udp_echo_across_nodes(lab):
    dst = lab.pod("c")
    out = lab.exec("b", f"echo clientip | nc -u -w 2 {dst.ipv4} 5353")
    assert out.stdout.rsplit(":", 1)[0] == lab.pod("b").ipv4


def test_pods_in_other_namespaces_are_reachable(lab):
    o1 = lab.pod("other/o1")
    assert curl(lab, "c", url(o1.ipv4, 80, "/hostname")) == "o1"


@pytest.mark.parametrize("node", ["node1", "node2", "node3"])
def test_every_node_reaches_every_pod(lab, node_host, node):
    host = node_host(node)
    for pod in lab.pods("default"):
        if pod.ports:
            out = host.check_output(f"curl -sS --max-time 5 http://{pod.ipv4}:{pod.ports[0].port}/hostname")
            assert out == pod.name


def test_node_to_pod_source_is_the_nodes_pod_network_address(lab, node_host):
    b = lab.pod("b")
    node1 = lab.plan.node("node1")
    out = node_host("node1").check_output(f"curl -sS --max-time 5 http://{b.ipv4}:8080/clientip")
    assert out.rsplit(":", 1)[0] == node1.vtep4  # Flannel-style: the VXLAN device's address, no SNAT


def test_mtu_is_underlay_less_vxlan_overhead(lab, pod_host):
    mtu = lab.plan.topology.networking.mtu - 50
    assert pod_host("a1").file("/sys/class/net/eth0/mtu").content_string.strip() == str(mtu)
    c = lab.pod("c").ipv4
    # a full-size DF packet crosses the tunnel; one byte more is refused by the pod's own stack
    assert lab.exec("a1", f"ping -c1 -W2 -M do -s {mtu - 28} {c}").exit_code == 0
    assert lab.exec("a1", f"ping -c1 -W2 -M do -s {mtu - 27} {c}").exit_code != 0


def test_vxlan_is_static_with_no_learning(lab, node_host):
    host = node_host("node1")
    details = host.check_output("ip -d link show vxlan0")
    assert "nolearning" in details and f"dstport {lab.plan.topology.networking.vxlan.port}" in details
    fdb = host.check_output("bridge fdb show dev vxlan0")
    for peer in lab.plan.nodes[1:]:
        assert f"{peer.vtep_mac} dst {peer.underlay_ip}" in fdb
    neigh = host.check_output("ip neigh show dev vxlan0")
    assert all(f"{p.vtep4} lladdr {p.vtep_mac} PERMANENT" in neigh for p in lab.plan.nodes[1:])


def test_pod_addresses_in_the_kernel_match_the_plan_and_are_unique(lab):
    seen = {}
    for pod in lab.pods():
        out = lab.exec(f"{pod.namespace}/{pod.name}", "ip -o addr show dev eth0 scope global").stdout
        addrs = {f.split("/")[0] for line in out.splitlines() for f in line.split() if "/" in f}
        assert addrs == {pod.ipv4, pod.ipv6}
        for a in addrs:
            assert a not in seen, f"{a} on both {seen.get(a)} and {pod.key}"
            seen[a] = pod.key


def test_pod_sees_its_name_resolver_and_hosts(lab, pod_host):
    host = pod_host("other/o1")
    assert host.check_output("hostname") == "o1"
    resolv = host.file("/etc/resolv.conf").content_string
    assert "nameserver 10.96.0.10" in resolv and "search other.svc.cluster.local" in resolv
    assert lab.pod("other/o1").ipv4 in host.file("/etc/hosts").content_string


def test_deployment_replicas_are_spread_and_serve(lab):
    replicas = lab.pods("default", app="web")
    assert len(replicas) == 3 and len({p.node for p in replicas}) == 3
    for p in replicas:
        assert curl(lab, "a1", url(p.ipv4, 8080, "/hostname")) == p.name


def test_status_reports_every_pod_ready(lab):
    data = lab.status()
    assert data["phase"] == "ready"
    assert all(n["state"] == "running" for n in data["nodes"])
    assert all(p["ready"] for p in data["pods"]), [p for p in data["pods"] if not p["ready"]]


def test_nodes_run_without_privileged(lab):
    import docker

    client = docker.from_env()
    for node in lab.plan.nodes:
        cfg = client.containers.get(node.container).attrs["HostConfig"]
        assert cfg["Privileged"] is False
        assert cfg["CapAdd"] == ["ALL"] and cfg["CapDrop"] == ["SYS_RESOURCE"]
        assert cfg["NetworkMode"] == "none"  # no Docker network at all: the underlay is the project's


def test_bridge_mac_is_fixed_so_gateway_entries_never_go_stale(lab, node_host):
    from testbed.network.bridge import bridge_mac

    node = lab.plan.node("node1")
    assert node_host("node1").check_output("cat /sys/class/net/cni0/address") == bridge_mac(node.gateway4)


HOST_PORT = """apiVersion: v1
kind: Pod
metadata: {name: hostport}
spec: {nodeName: node3, containers: [{name: c, ports: [{containerPort: 8080, hostPort: 8099},
                                                      {containerPort: 5353, protocol: UDP, hostPort: 8099}]}]}
"""


def test_a_host_port_answers_on_its_nodes_address_from_outside_and_from_the_node(testbed_lab, tmp_path):
    """The built-in wiring's hostPort, as the portmap plugin does it: DNAT from the node's own addresses."""
    import docker

    lab = testbed_lab
    (tmp_path / "hp.yaml").write_text(HOST_PORT)
    lab.apply(tmp_path / "hp.yaml")
    try:
        node = lab.plan.node("node3")
        ext = docker.from_env().containers.get(lab.plan.machine("ext2").container)
        got = ext.exec_run(["curl", "-s", "--max-time", "5", f"http://{node.underlay_ip}:8099/clientip"])
        assert got.output.decode().rsplit(":", 1)[0] == "203.0.113.11"  # the client's own address
        udp = ext.exec_run(["sh", "-c", f"echo hostname | nc -u -w1 {node.underlay_ip} 8099"])
        assert udp.output.decode().strip() == "hostport"
        other = lab.plan.node("node1")
        assert ext.exec_run(["curl", "-s", "--max-time", "2", f"http://{other.underlay_ip}:8099/"]).exit_code != 0
    finally:
        lab.delete(tmp_path / "hp.yaml")


QUIET = """apiVersion: v1
kind: Pod
metadata: {name: quiet}
spec: {nodeName: node1, containers: [{name: c}]}
"""


def test_a_new_dual_stack_pod_floods_no_dad_or_router_solicitation(testbed_lab, tmp_path):
    """A node's bridge floods every multicast packet to each of its pods (no querier): the lab gives a pod its
    addresses and routes, so the pod's eth0 sends no duplicate-address probe and no router solicitation; the
    node's end of its veth, a bridge port, has no IPv6 address to probe for, and the pod is reached over IPv6."""
    import docker

    lab = testbed_lab
    node = docker.from_env().containers.get(lab.plan.node("node1").container)
    # DAD probes (135, from ::) and solicitations (133) come within about 3 s of the link's up
    node.exec_run(["sh", "-c", "timeout 7 tcpdump -i cni0 -nn -l 'icmp6 and (ip6[40] == 133 or ip6[40] == 135)' "
                               f"> /tmp/{tmp_path.name}.txt 2>&1"], detach=True)
    time.sleep(0.5)
    (tmp_path / "quiet.yaml").write_text(QUIET)
    lab.apply(tmp_path / "quiet.yaml")
    try:
        pod = next(p for p in lab.plan.pods if p.key == "default/quiet")
        v4 = ip_address(pod.ipv4).packed  # its MAC is 0a:58 and its IPv4 address; its link-local the EUI-64
        link_local = str(ip_address(b"\xfe\x80" + bytes(6) + bytes([0x08, 0x58, v4[0]]) + b"\xff\xfe" + v4[1:]))
        time.sleep(6.5)
        seen = node.exec_run(["cat", f"/tmp/{tmp_path.name}.txt"]).output.decode()
        assert "listening on cni0" in seen, seen
        assert link_local not in seen, seen
        # nor does the node's end of its veth: a hairpin bridge port with no IPv6 address of its own
        port = host_veth(pod.netns)
        assert node.exec_run(["ip", "-6", "-o", "addr", "show", "dev", port]).output.decode() == ""
        assert "hairpin on" in node.exec_run(["ip", "-d", "link", "show", port]).output.decode()
        web = next(p for p in lab.plan.pods if p.labels.get("app") == "web" and p.node != "node1")
        assert lab.exec("quiet", f"curl -s -m 3 http://[{web.ipv6}]:8080/hostname").stdout == web.name
    finally:
        lab.delete(tmp_path / "quiet.yaml")
        node.exec_run(["rm", "-f", f"/tmp/{tmp_path.name}.txt"])
