"""NetworkPolicy with real traffic: the upstream model (x, y, z; a, b, c; TCP and UDP on 80 and 81), each case
of netpol_cases applied, its full 9x9 matrix probed, and every cell held to the case's expectation (written from
the spec) and to the evaluator. Probed via pod IPs and via ClusterIPs, in vxlan with nftables kube-proxy, in host-gw
with iptables kube-proxy, and in bgp."""

import json
from pathlib import Path

import pytest
import yaml
from kernel import sctp_sockets
from netpol_cases import BY_NAME, CASES, Case, pol
from policylab import NAME, apply_case, check, undo_case

from testbed.pytest_plugin import Lab

HERE = Path(__file__).parent
MODEL = HERE.parents[1] / "topologies" / "manifests" / "netpol-model.yaml"
quiet = {"say": lambda _: None}
SECOND = ["deny-all-ingress", "deny-all-egress", "pod-and-namespace-selector", "named-port-udp-from-namespace",
          "ingress-ip-block-with-except", "end-port-range"]
VIA_SERVICE = ["deny-all-ingress", "allow-from-namespace-y", "named-port-tcp", "ingress-and-egress-together"]


@pytest.fixture(scope="module")
def vxlan_nft(modes) -> Lab:
    return modes("vxlan", "nftables")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_policy_matrix_via_pod_ip(vxlan_nft, case, tmp_path):
    path = apply_case(vxlan_nft, case, tmp_path)
    try:
        check(vxlan_nft, case)
    finally:
        undo_case(vxlan_nft, case, path)


@pytest.mark.parametrize("name", VIA_SERVICE)
def test_policy_matrix_via_cluster_ip_follows_the_backend(vxlan_nft, name, tmp_path):
    case = BY_NAME[name]
    path = apply_case(vxlan_nft, case, tmp_path)
    try:
        check(vxlan_nft, case, "service")
    finally:
        undo_case(vxlan_nft, case, path)


def test_egress_deny_keeps_dns_when_a_rule_allows_kube_dns(vxlan_nft, tmp_path):
    case = BY_NAME["egress-deny-with-dns-allowed"]
    path = apply_case(vxlan_nft, case, tmp_path)
    try:
        check(vxlan_nft, case, "dns")
        assert vxlan_nft.exec("x/a", "getent hosts s-a.y").exit_code == 0
    finally:
        undo_case(vxlan_nft, case, path)
    no_dns = Case("egress-to-y-without-dns", lambda ips: [
        {**case.policies(ips)[0], "spec": {**case.policies(ips)[0]["spec"],
                                           "egress": case.policies(ips)[0]["spec"]["egress"][1:]}}],
                  lambda s, d, pr, po: s.split("/")[0] != "x")
    path = apply_case(vxlan_nft, no_dns, tmp_path)
    try:
        # a flow the last case allowed goes on (README, Limits): a new query from a source port an earlier one
        # used within conntrack's UDP timeout would still pass, so the earlier queries' entries go first
        for node in vxlan_nft.plan.nodes:
            vxlan_nft.node_host(node.name).run("conntrack -D -p udp --orig-port-dst 53")
        check(vxlan_nft, no_dns, "dns", resolves=False)  # from x nothing resolves, so nothing connects
        check(vxlan_nft, Case("same-by-ip", no_dns.policies, case.allows))  # by IP, y is still reachable
    finally:
        undo_case(vxlan_nft, no_dns, path)


def test_relabelled_pod_is_selected_in_place_and_deletion_restores_access(vxlan_nft, tmp_path):
    case = BY_NAME["pod-selector-match-expressions"]  # x/a admits pod=b of x only
    before = vxlan_nft.pod("x/c")
    path = apply_case(vxlan_nft, case, tmp_path)
    try:
        assert vxlan_nft.probe("x/c", f"{vxlan_nft.pod('x/a').ipv4}:80", timeout=1)["result"] == "timeout"
        model = [d for d in yaml.safe_load_all(MODEL.read_text())
                 if d and d["kind"] == "Pod" and d["metadata"]["namespace"] == "x" and d["metadata"]["name"] == "c"]
        model[0]["metadata"]["labels"] = {"pod": "b"}
        relabel = tmp_path / "relabel.yaml"
        relabel.write_text(yaml.safe_dump(model[0]))
        vxlan_nft.apply(relabel)
        after = vxlan_nft.pod("x/c")
        assert (after.ipv4, after.node) == (before.ipv4, before.node)
        check(vxlan_nft, Case("relabelled", case.policies, lambda s, d, pr, po: d != "x/a" or s in ("x/b", "x/c")))
    finally:
        undo_case(vxlan_nft, case, path)
        model[0]["metadata"]["labels"] = {"pod": "c"}
        relabel.write_text(yaml.safe_dump(model[0]))
        vxlan_nft.apply(relabel)
    check(vxlan_nft, Case("none", lambda ips: [], lambda *_: True))


def test_a_new_pod_is_isolated_from_its_first_packet_and_a_new_peer_is_admitted(vxlan_nft, tmp_path):
    case = BY_NAME["pod-selector-match-expressions"]  # x/a admits pod=b of x only
    path = apply_case(vxlan_nft, case, tmp_path)
    extra = tmp_path / "pods.yaml"
    extra.write_text(yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "b2", "namespace": "x", "labels": {"pod": "b"}},
         "spec": {"nodeName": "node2", "containers": [{"name": "c", "ports": [{"containerPort": 80}]}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a2", "namespace": "x", "labels": {"pod": "a"}},
         "spec": {"nodeName": "node2", "containers": [{"name": "c", "ports": [{"containerPort": 80}]}]}}]))
    try:
        vxlan_nft.apply(extra)
        a2 = vxlan_nft.pod("x/a2").ipv4
        assert vxlan_nft.probe("x/b2", f"{vxlan_nft.pod('x/a').ipv4}:80", timeout=1)["result"] == "connected"
        assert vxlan_nft.probe("x/b2", f"{a2}:80", timeout=1)["result"] == "connected"
        assert vxlan_nft.probe("x/c", f"{a2}:80", timeout=1)["result"] == "timeout"
    finally:
        vxlan_nft.delete(extra)
        undo_case(vxlan_nft, case, path)


def cli(*args: str):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "testbed", *args, "--lab", NAME], capture_output=True, text=True,
                          timeout=120, check=False)


def test_matrix_and_explain_from_the_command_line(vxlan_nft, tmp_path):
    case = BY_NAME["pod-and-namespace-selector"]  # x/a admits y/b only
    path = apply_case(vxlan_nft, case, tmp_path)
    try:
        shown = cli("probe", "--matrix", "-n", "x", "-n", "y", "--ports", "80")
        assert shown.returncode == 0, shown.stderr
        rows = {line.split("\t")[0]: line.split("\t")[1:] for line in shown.stdout.splitlines()[2:] if line}
        assert rows["y/b"][0] == "." and rows["y/a"][0] == "X" and rows["x/b"][0] == "X"
        good = tmp_path / "good.txt"
        good.write_text(shown.stdout)
        assert cli("probe", "--matrix", "-n", "x", "-n", "y", "--ports", "80", "--expect", str(good)).returncode == 0
        bad = tmp_path / "bad.txt"
        bad.write_text(shown.stdout.replace("y/a\tX", "y/a\t."))
        wrong = cli("probe", "--matrix", "-n", "x", "-n", "y", "--ports", "80", "--expect", str(bad))
        assert wrong.returncode == 1 and "tcp/80 y/a → x/a: expected allowed, observed blocked" in wrong.stderr
        explained = cli("policy", "explain", "y/a", "x/a:80", "--json")
        assert explained.returncode == 1
        verdict = json.loads(explained.stdout)
        assert verdict["ingress"]["policies"] == ["x/and"] and not verdict["allowed"]
        allowed = json.loads(cli("policy", "explain", "y/b", "x/a:80/tcp", "--json").stdout)
        assert allowed["allowed"] and allowed["ingress"]["by"] == "x/and ingress[0]"
    finally:
        undo_case(vxlan_nft, case, path)


@pytest.fixture(scope="module")
def hostgw_ipt(modes, vxlan_nft) -> Lab:
    """After the vxlan tests (it takes the same lab over): host-gw with iptables kube-proxy."""
    return modes("host-gw", "iptables")


@pytest.mark.parametrize("name", SECOND)
def test_policy_matrix_in_host_gw_with_iptables_proxy(hostgw_ipt, name, tmp_path):
    case = BY_NAME[name]
    path = apply_case(hostgw_ipt, case, tmp_path)
    try:
        check(hostgw_ipt, case)
        if name in VIA_SERVICE:
            check(hostgw_ipt, case, "service")
    finally:
        undo_case(hostgw_ipt, case, path)



def test_sctp_ports_are_enforced_where_the_kernel_has_sctp(hostgw_ipt, tmp_path):
    if not sctp_sockets():
        pytest.skip("this kernel has no SCTP sockets: SCTP rules render, but no SCTP flow can be probed")
    policy = pol("sctp", "x", {"matchLabels": {"pod": "a"}}, ingress=[{"ports": [{"port": 80, "protocol": "SCTP"}]}])
    case = Case("sctp", lambda ips: [policy], lambda s, d, pr, po: d != "x/a")
    path = apply_case(hostgw_ipt, case, tmp_path)
    try:
        target = hostgw_ipt.pod("x/a").ipv4
        # nothing serves SCTP in the model: an admitted association is refused (aborted), a blocked one times out
        assert hostgw_ipt.probe("y/a", f"{target}:80", "sctp", timeout=1)["result"] != "timeout"
        assert hostgw_ipt.probe("y/a", f"{target}:81", "sctp", timeout=1)["result"] == "timeout"
    finally:
        undo_case(hostgw_ipt, case, path)


@pytest.mark.parametrize("name", ["pod-and-namespace-selector", "egress-to-namespace-z"])
def test_policy_matrix_in_bgp_mode(modes, hostgw_ipt, name, tmp_path):
    """After the host-gw tests: the same lab routed by BGP (BIRD on every node), nftables kube-proxy."""
    lab = modes("bgp", "nftables")
    case = BY_NAME[name]
    path = apply_case(lab, case, tmp_path)
    try:
        check(lab, case)
    finally:
        undo_case(lab, case, path)


def test_switching_kube_proxy_mode_leaves_nothing_of_the_other_policy_rules(modes, tmp_path):
    import docker

    ipt_lab = modes("host-gw", "iptables")
    case = BY_NAME["deny-all-ingress"]
    path = apply_case(ipt_lab, case, tmp_path)
    nodes = [docker.from_env().containers.get(n.container) for n in ipt_lab.plan.nodes]

    def seen(node) -> tuple[str, str, str]:
        ipsets = node.exec_run(["ipset", "list", "-n"]).output.decode()
        mangle = node.exec_run(["iptables", "-t", "mangle", "-S"]).output.decode()
        nft = node.exec_run(["nft", "list", "tables"]).output.decode()
        return ipsets, mangle, nft

    try:
        assert all("tb" in seen(n)[0] and "TESTBED-POLICY" in seen(n)[1] for n in nodes)
        lab = modes("host-gw", "nftables")
        for n in nodes:
            ipsets, mangle, nft = seen(n)
            assert "tb" not in ipsets and "TESTBED" not in mangle and "testbed-policy" in nft
        check(lab, case)
    finally:
        undo_case(ipt_lab, case, path)
    assert all("testbed-policy" not in seen(n)[2] for n in nodes)  # no policy left: no table
