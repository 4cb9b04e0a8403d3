"""The example from README.md, run against the default topology, so the README stays true."""

import pytest

pytestmark = pytest.mark.topology("topologies/default.yaml")


def test_cross_node_keeps_the_source_ip(testbed_lab, pod_exec):
    client, server = testbed_lab.pod("default/client"), testbed_lab.pod("backend/db")
    assert client.node != server.node
    out = pod_exec("default/client", f"curl -s http://{server.ipv4}:5432/clientip").stdout
    assert out.rsplit(":", 1)[0] == client.ipv4


def test_node_sees_the_overlay(node_host, pod_host):
    assert node_host("node1").interface("vxlan0").exists  # testinfra, docker backend
    assert pod_host("default/client").check_output("hostname") == "client"


def test_default_lab_spreads_the_web_deployment(testbed_lab):
    web = testbed_lab.pods("default", app="web")
    assert len(web) == 3 and len({p.node for p in web}) == 3
    assert testbed_lab.plan.topology.networking.dualStack
    assert all(p.ipv6 for p in testbed_lab.pods())
