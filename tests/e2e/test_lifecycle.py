"""Changing a running lab: apply and delete, Deployment scaling, re-running up."""

from pathlib import Path

import pytest
from conftest import curl, url
from kernel import sctp_sockets

from testbed import lab as labs
from testbed.agent.pods import host_veth

pytestmark = pytest.mark.topology("tests/e2e/topology.yaml")
MANIFESTS = Path(__file__).parent / "manifests"


def _node_has(node_host, node: str, netns: str) -> tuple[bool, bool]:
    host = node_host(node)
    in_netns = netns in host.check_output("ip netns list").split()
    in_links = host.run(f"ip link show {host_veth(netns)}").rc == 0
    return in_netns, in_links


def test_apply_then_delete_a_pod_frees_its_ip_netns_and_veth(lab, node_host):
    lab.apply(MANIFESTS / "extra-pod.yaml")
    extra = lab.pod("extra")
    assert curl(lab, "a1", url(extra.ipv4, 9090, "/hostname")) == "extra"
    assert _node_has(node_host, "node2", "default_extra") == (True, True)

    assert lab.delete(MANIFESTS / "extra-pod.yaml") == []
    assert "default/extra" not in {p.key for p in lab.pods()}
    assert _node_has(node_host, "node2", "default_extra") == (False, False)
    assert lab.exec("a1", f"curl -s --max-time 2 http://{extra.ipv4}:9090/").exit_code != 0

    # host-local IPAM hands the freed address to the next pod on that node
    lab.apply(MANIFESTS / "late-pod.yaml")
    try:
        assert lab.pod("late").ipv4 == extra.ipv4
        assert curl(lab, "c", url(extra.ipv4, 9090, "/hostname")) == "late"
    finally:
        lab.delete(MANIFESTS / "late-pod.yaml")


def _steps_of_last(name: str, command: str) -> set[str]:
    from testbed import events

    seen = events.read(name)
    start = max(i for i, e in enumerate(seen) if e["reason"] == "Started" and e["message"].startswith(command))
    return {e["step"] for e in seen[start:] if e["reason"] == "Step"}


def test_an_apply_of_manifests_leaves_the_machines_alone(lab):
    """O(changes): the machines follow the topology, so an apply of manifests runs no machine step; `up` does."""
    machine_steps = {"Starting containers", "Wiring the underlay", "Wiring the external segment",
                     "Routing through the router", "Creating pod bridges", "Pod network (vxlan)"}
    lab.apply(MANIFESTS / "extra-pod.yaml")
    try:
        steps = _steps_of_last(lab.name, "apply")
        assert "Creating pods" in steps and not steps & machine_steps, steps
        assert curl(lab, "a1", url(lab.pod("extra").ipv4, 9090, "/hostname")) == "extra"
    finally:
        lab.delete(MANIFESTS / "extra-pod.yaml")
    assert not _steps_of_last(lab.name, "delete") & machine_steps
    labs.up(Path(__file__).parent / "topology.yaml", say=lambda _: None)
    assert machine_steps <= _steps_of_last(lab.name, "up")


def _pod_syncs(lab) -> dict[str, int]:
    """How many pod syncs each node's agent has logged."""
    import docker

    client = docker.from_env()
    return {n.name: client.containers.get(n.container).logs().decode().count("sync_pods done")
            for n in lab.plan.nodes}


def test_an_apply_tells_only_the_nodes_whose_pods_change(lab):
    before = _pod_syncs(lab)
    lab.apply(MANIFESTS / "extra-pod.yaml")  # a pod on node2
    try:
        after = _pod_syncs(lab)
        assert after["node2"] == before["node2"] + 1
        assert {n: c for n, c in after.items() if n != "node2"} == {n: c for n, c in before.items() if n != "node2"}
        lab.apply(MANIFESTS / "extra-pod.yaml")  # nothing changes: no node is told
        assert _pod_syncs(lab) == after
    finally:
        lab.delete(MANIFESTS / "extra-pod.yaml")


def _received(lab) -> dict[str, dict[str, int]]:
    """The requests each machine's agent has received, by op (status and other reads aside)."""
    from testbed import state
    from testbed.runtime import agent

    return {m.name: agent.call(state.run_dir(lab.name) / m.name, "status")["received"] for m in lab.plan.machines()}


def test_a_resync_with_no_change_sends_nothing_to_any_agent(lab):
    """O(changes): an apply that changes nothing reaches no agent (pods, rules, DNS files, daemons); a change is
    still sent, to the nodes it is for, and the DNS servers answer it (its records sent as updates)."""
    dns = lab.plan.topology.dns_ip()
    lab.apply(MANIFESTS / "extra-pod.yaml")
    name = f"{lab.pod('extra').ipv4.replace('.', '-')}.default.pod.cluster.local"
    dig = f"dig +short +time=1 +tries=2 @{dns} {name}"
    try:
        assert lab.exec("a1", dig).stdout.strip() == lab.pod("extra").ipv4
        before = _received(lab)
        lab.apply(MANIFESTS / "extra-pod.yaml")
        assert _received(lab) == before
    finally:
        lab.delete(MANIFESTS / "extra-pod.yaml")
    after = _received(lab)
    assert after["node2"]["sync_pods"] == before["node2"]["sync_pods"] + 1
    assert lab.exec("a1", dig).stdout.strip() == ""


def test_the_kept_plan_of_the_last_sync_is_the_one_planning_gives(lab):
    """The next apply compares with the plan the last sync kept (lastplan.py) instead of planning it again: the
    two must be the same, after an apply and after a delete."""
    from testbed import lastplan, state

    def kept_is_planned() -> bool:
        st = state.load(lab.name)
        kept = lastplan.load(st)
        return kept is not None and kept == labs._plan(st, labs._stored(st), st.readiness)

    lab.apply(MANIFESTS / "extra-pod.yaml")
    try:
        assert kept_is_planned()
    finally:
        lab.delete(MANIFESTS / "extra-pod.yaml")
    assert kept_is_planned()


def test_deployment_replicas_follow_apply(lab):
    try:
        lab.apply(MANIFESTS / "web-5.yaml")
        replicas = lab.pods("default", app="web")
        assert len(replicas) == 5
        for p in replicas:
            assert curl(lab, "b", url(p.ipv4, 8080, "/hostname")) == p.name
        assert all(p["ready"] for p in lab.status()["pods"])
    finally:
        lab.apply(MANIFESTS / "web-3.yaml")
    assert len(lab.pods("default", app="web")) == 3


def test_deleting_a_namespace_deletes_its_pods(lab):
    lab.apply(MANIFESTS / "team.yaml")
    t1 = lab.pod("team/t1")
    assert curl(lab, "a1", url(t1.ipv4, 8080, "/hostname")) == "t1"
    lab.delete(MANIFESTS / "team.yaml")
    assert not lab.pods("team")
    assert lab.exec("a1", f"curl -s --max-time 2 http://{t1.ipv4}:8080/").exit_code != 0


def test_deleting_what_is_not_there_reports_it(lab):
    assert lab.delete(MANIFESTS / "never-applied.yaml") == ["Pod default/never"]


def test_up_again_is_safe_and_keeps_pods(lab, node_host):
    before = {p.key: p.ipv4 for p in lab.pods()}
    inode = node_host("node3").check_output("stat -L -c %i /run/netns/default_c")
    labs.up(Path(__file__).parent / "topology.yaml", say=lambda _: None)
    assert {p.key: p.ipv4 for p in lab.pods()} == before
    assert node_host("node3").check_output("stat -L -c %i /run/netns/default_c") == inode  # not recreated
    assert curl(lab, "a1", url(lab.pod("c").ipv4, 8080, "/hostname")) == "c"



def test_a_port_the_kernel_cannot_serve_is_reported_not_fatal(lab):
    lab.apply(MANIFESTS / "sctp-pod.yaml")
    try:
        pod = lab.pod("sctp")
        assert curl(lab, "a1", url(pod.ipv4, 8080, "/hostname")) == "sctp"
        (row,) = [p for p in lab.status()["pods"] if p["name"] == "sctp"]
        assert row["ready"]
        if not sctp_sockets():  # this kernel has no SCTP sockets: the pod says so instead of failing
            assert any("SCTP/9999" in w for w in row["warnings"])
    finally:
        lab.delete(MANIFESTS / "sctp-pod.yaml")


def test_a_restarted_node_is_rebuilt_from_desired_state_by_up(lab):
    """The controller heals it too (test_faults.py): an `up` racing that heal must leave the same lab."""
    import docker

    docker.from_env().containers.get(lab.plan.node("node2").container).restart(timeout=0)
    labs.up(Path(__file__).parent / "topology.yaml", say=lambda _: None)
    for ref in ("b", "other/o1"):
        pod = lab.pod(ref)
        port = pod.ports[0].port
        assert curl(lab, "a1", url(pod.ipv4, port, "/clientip")).rsplit(":", 1)[0] == lab.pod("a1").ipv4
        assert curl(lab, "c", url(pod.ipv6, port, "/hostname")) == pod.name


def test_up_after_a_change_of_pod_range_leaves_no_old_address(tmp_path):
    import docker
    import yaml

    source = yaml.safe_load((Path(__file__).parent / "single.yaml").read_text())
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text(yaml.safe_dump(source))
    source["networking"] = {"podCIDR": "10.250.0.0/16"}
    second.write_text(yaml.safe_dump(source))
    try:
        labs.up(first, say=lambda _: None)
        ctx = labs.up(second, say=lambda _: None, replace=True)
        node = docker.from_env().containers.get(ctx.plan.nodes[0].container)
        addrs = node.exec_run("ip -4 -o addr show dev cni0").output.decode()
        assert "10.250.0.1/24" in addrs and "10.244." not in addrs
        pod = ctx.plan.pods[0]
        assert pod.ipv4.startswith("10.250.0.")
        out = node.exec_run(["curl", "-s", "--max-time", "5", f"http://{pod.ipv4}:80/hostname"]).output.decode()
        assert out == pod.name
    finally:
        labs.down("e2e-single", say=lambda _: None)
