"""Routed pod networks with real traffic: vxlan, host-gw and bgp on one lab that is switched between them with
`up` (so each switch is tested to converge and to leave nothing of the mode before), the router, the external
segment with its DNS and web hosts, egress NAT, BGP faults, and `move`."""

import os
import subprocess
import sys

import docker
import leftovers
import pytest
from conftest import curl, url
from routedlab import MODES, NAME
from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

from testbed import lab as labs
from testbed.network.underlay import fabric_if
from testbed.pytest_plugin import Lab

WEB, WEB6, DNS = "203.0.113.11", "2001:db8::b", "203.0.113.10"
quiet = {"say": lambda _: None}


def sh(container: str, command: str) -> tuple[int, str]:
    result = docker.from_env().containers.get(container).exec_run(["sh", "-c", command])
    return result.exit_code, result.output.decode()


def leftovers_of_other_modes(lab: Lab, mode: str) -> list[str]:
    found = []
    for node in lab.plan.nodes:
        if mode != "vxlan" and sh(node.container, "ip link show vxlan0")[0] == 0:
            found.append(f"{node.name}: vxlan0")
        if mode != "host-gw" and "proto 201" in sh(node.container, "ip route; ip -6 route")[1]:
            found.append(f"{node.name}: host-gw routes")
    for m in [*lab.plan.nodes, lab.plan.router]:
        if mode != "bgp" and sh(m.container, "pgrep -x bird")[0] == 0:
            found.append(f"{m.name}: bird")
        if mode == "bgp" and "proto 202" in sh(m.container, "ip route")[1]:
            found.append(f"{m.name}: static pod routes")
    return found


@pytest.mark.parametrize("mode", [*MODES, "vxlan"], ids=[*MODES, "back-to-vxlan"])
def test_each_mode_carries_pods_nodes_and_the_outside_world(routed, mode):
    lab = routed(mode)
    assert lab.status()["phase"] == "ready", lab.status()["reasons"]
    assert leftovers_of_other_modes(lab, mode) == []
    a, c = lab.pod("a"), lab.pod("c")
    # pod to pod across nodes, both families, no NAT
    assert curl(lab, "a", url(c.ipv4, 8080, "/clientip")).rsplit(":", 1)[0] == a.ipv4
    assert curl(lab, "a", url(c.ipv6, 8080, "/clientip")).rsplit(":", 1)[0] == f"[{a.ipv6}]"
    # node to pod
    node1 = lab.plan.node("node1")
    code, out = sh(node1.container, f"curl -s --max-time 5 http://{c.ipv4}:8080/clientip")
    assert code == 0 and out.rsplit(":", 1)[0] in (node1.underlay_ip, node1.gateway4, node1.vtep4)
    # pod to the outside world: masqueraded to its node's address
    assert curl(lab, "a", url(WEB, 80, "/clientip")).rsplit(":", 1)[0] == node1.underlay_ip
    assert curl(lab, "c", url(WEB6, 80, "/clientip")).rsplit(":", 1)[0] == f"[{lab.plan.node('node3').underlay_ip6}]"


@retry(retry=retry_if_result(lambda ok: not ok), stop=stop_after_delay(30), wait=wait_fixed(0.5), reraise=True)
def _crosses(lab: Lab, src: str, dst: str) -> bool:
    got = lab.exec(src, ["curl", "-sS", "--max-time", "2", url(lab.pod(dst).ipv4, 8080, "/clientip")])
    return got.exit_code == 0 and got.stdout.rsplit(":", 1)[0] == lab.pod(src).ipv4


def test_the_segments_live_in_the_fabric_machine_and_come_back_with_it(routed):
    """The underlay and external bridges, and every machine's veth end, are in the fabric container's namespace:
    nothing of the lab is in the host's. A restarted fabric is re-wired by the control plane (Docker's start event),
    and pods talk across nodes again, source IP kept."""
    lab = routed("vxlan")
    ends = {fabric_if(m.name) for m in [*lab.plan.nodes, lab.plan.router]}
    assert not os.path.exists(f"/run/netns/testbed-{NAME}")
    assert not ends & leftovers.host_links()
    code, out = sh(lab.plan.fabric.container, "ip -o link show master fabric")
    assert code == 0 and ends == {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}
    docker.from_env().containers.get(lab.plan.fabric.container).restart(timeout=0)
    assert _crosses(lab, "a", "c")
    assert sh(lab.plan.fabric.container, "ip -o link show master fabric")[1].count("state UP") == len(ends)


def test_the_external_dns_server_answers_for_its_zone(routed):
    lab = routed("vxlan")
    assert lab.exec("a", f"dig +short +time=2 @{DNS} www.example.com").stdout.split() == [WEB]
    assert lab.exec("a", f"dig +short +time=2 @{DNS} www.example.com AAAA").stdout.split() == [WEB6]
    _code, out = sh(f"{NAME}-ext2", f"dig +short +time=2 @{DNS} web.example.com")
    assert out.split() == ["www.example.com.", WEB]


@pytest.mark.parametrize("mode", ["vxlan", "host-gw"])
def test_move_refuses_in_a_mode_that_cannot_keep_the_ip(routed, mode):
    routed(mode)
    result = subprocess.run([sys.executable, "-m", "testbed", "move", "--lab", NAME, "m", "--to", "node2"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert f"move of default/m refused, nothing was changed: network {mode} cannot keep a pod's IP on another " \
           "node" in result.stderr
    assert "invalid input" not in result.stderr


def test_bgp_without_nat_external_hosts_see_pod_ips(routed):
    lab = routed("bgp", nat=False)
    a, c = lab.pod("a"), lab.pod("c")
    assert curl(lab, "a", url(WEB, 80, "/clientip")).rsplit(":", 1)[0] == a.ipv4
    assert curl(lab, "c", url(WEB6, 80, "/clientip")).rsplit(":", 1)[0] == f"[{c.ipv6}]"
    code, out = sh(f"{NAME}-ext2", f"curl -s --max-time 5 http://{c.ipv4}:8080/clientip")
    assert code == 0 and out.rsplit(":", 1)[0] == WEB


def test_bgp_router_holds_every_node_range_and_no_vxlan_device(routed):
    lab = routed("bgp")
    table = labs_routes(lab, "router")
    for node in lab.plan.nodes:
        assert table[node.cidr4] == ("bird", node.underlay_ip)
        assert table[node.cidr6] == ("bird", node.underlay_ip6)
        assert sh(node.container, "ip link show vxlan0")[0] != 0
    sessions = lab.status()["bgp"]
    assert {x["info"] for m in sessions.values() for x in m["sessions"]} == {"Established"}


def labs_routes(lab: Lab, machine: str) -> dict[str, tuple[str, str | None]]:
    from testbed.observe.status import routes

    return {r["dst"]: (r["protocol"], r["gateway"]) for r in routes(lab.name, machine)[machine]}


@retry(retry=retry_if_result(lambda ok: not ok), stop=stop_after_delay(30), wait=wait_fixed(0.1))
def _router_has(lab: Lab, cidr: str, present: bool) -> bool:
    return (cidr in labs_routes(lab, "router")) == present


def test_bgp_a_stopped_node_is_withdrawn_and_up_restores_it(routed):
    lab = routed("bgp")
    node3 = lab.plan.node("node3")
    docker.from_env().containers.get(node3.container).stop(timeout=0)
    assert _router_has(lab, node3.cidr4, False)  # withdrawn once the hold time runs out
    assert lab.status()["phase"] == "degraded"
    routed("bgp")
    assert _router_has(lab, node3.cidr4, True)
    assert curl(lab, "a", url(lab.pod("c").ipv4, 8080, "/hostname")) == "c"


def test_bgp_a_killed_router_daemon_comes_back_with_its_routes(routed):
    lab = routed("bgp")
    router = lab.plan.router
    assert sh(router.container, "pkill -9 -x bird")[0] == 0
    assert _bird_restarted(lab)
    assert _router_has(lab, lab.plan.node("node2").cidr4, True)
    # the killed daemon's routes stay in the kernel until the new one takes over, and its peers' sessions come
    # back within their hold time: the outside world is answered again once both have happened
    assert _ext2_reaches(lab.pod("b").ipv4, "b")
    lb = next(s for s in lab.plan.services if s.name == "lb").lb_ips
    for prefix in [*(n.cidr4 for n in lab.plan.nodes), *(f"{ip}/32" for ip in lb)]:
        assert _router_has(lab, prefix, True)  # every route back: the next test starts on a converged lab


def test_bgp_up_restarts_a_hung_bird_and_no_other(routed):
    lab = routed("bgp")
    node2 = lab.plan.node("node2")
    assert sh(node2.container, "pkill -STOP -x bird")[0] == 0  # hung: its control socket takes and never answers
    from testbed import state

    said: list[str] = []
    labs.up(state.load(lab.name).topology_file, say=said.append, replace=True, name=lab.name)
    assert [s for s in said if "does not answer" in s] == ["BIRD on node2 does not answer: restarting it"]
    assert sh(node2.container, "ps -o stat= -C bird")[1].strip()[:1] == "S"  # a new one, running
    assert _ext2_reaches(lab.pod("b").ipv4, "b")  # node2's range announced again


@retry(retry=retry_if_result(lambda ok: not ok), stop=stop_after_delay(30), wait=wait_fixed(0.2))
def _bird_restarted(lab: Lab) -> bool:
    return {d["name"]: d["restarts"] for d in _agent_status(lab, "router")["daemons"]}["bird"] >= 1


@retry(retry=retry_if_result(lambda ok: not ok), stop=stop_after_delay(30), wait=wait_fixed(0.2))
def _ext2_reaches(ip: str, name: str) -> bool:
    return sh(f"{NAME}-ext2", f"curl -s --max-time 2 http://{ip}:8080/hostname")[1] == name


def _agent_status(lab: Lab, machine: str) -> dict:
    from testbed import state
    from testbed.runtime import agent

    return agent.call(state.run_dir(lab.name) / machine, "status")


def test_bgp_a_restarted_router_is_rewired_by_up(routed):
    lab = routed("bgp")
    docker.from_env().containers.get(lab.plan.router.container).restart(timeout=0)
    routed("bgp")
    assert _router_has(lab, lab.plan.node("node3").cidr4, True)
    assert curl(lab, "a", url(WEB, 80, "/hostname")) == "ext2"


def test_bgp_move_keeps_the_ip_and_is_reached_from_everywhere(routed):
    lab = routed("bgp")
    before = lab.pod("m")
    home = lab.plan.home(before.ipv4)
    to = "node3" if before.node != "node3" else "node1"
    labs.move(NAME, "m", to, **quiet)
    after = lab.pod("m")
    assert (after.node, after.ipv4, after.ipv6) == (to, before.ipv4, before.ipv6)
    table = labs_routes(lab, "router")
    assert table[f"{after.ipv4}/32"] == ("bird", lab.plan.node(to).underlay_ip)
    neighbours = [p.name for p in lab.pods() if p.node == home.name and p.name != "m"]
    assert neighbours  # a pod that stays in m's old range, on m's old node
    for src in {*neighbours, "a", "b", "c"}:
        assert curl(lab, src, url(after.ipv4, 8080, "/hostname")) == "m"
        assert curl(lab, src, url(after.ipv6, 8080, "/clientip")).rsplit(":", 1)[0] == f"[{lab.pod(src).ipv6}]"
    _code, out = sh(f"{NAME}-ext2", f"curl -s --max-time 5 http://{after.ipv4}:8080/hostname")
    assert out == "m"
    labs.move(NAME, "m", home.name, **quiet)  # and back home: the /32 is withdrawn
    assert _router_has(lab, f"{after.ipv4}/32", False)
    assert curl(lab, "c", url(after.ipv4, 8080, "/hostname")) == "m"


@pytest.mark.parametrize("mode", ["bgp", "vxlan"])
def test_a_load_balancer_ip_is_reached_from_outside(routed, mode):
    """bgp: every node announces it (MetalLB BGP); vxlan: one node answers ARP for it (MetalLB L2)."""
    lab = routed(mode)
    (ip,) = next(s for s in lab.plan.services if s.name == "lb").lb_ips
    if mode == "bgp":
        table = {r["dst"]: r for r in __import__("testbed.observe.status", fromlist=["routes"]).routes(NAME, "router")[
            "router"]}
        assert table[f"{ip}/32"]["protocol"] == "bird"
    got = lab.probe("ext2", f"{ip}:80")
    assert got["result"] == "connected" and got["pod"] == "b"
