"""The routed lab: three nodes, dual stack, pods pinned to nodes and a LoadBalancer Service, brought up (or
switched) in each pod network mode; one for the session."""

from pathlib import Path

from relab import up_from

from testbed.pytest_plugin import Lab

NAME = "e2e-routed"
MODES = ["vxlan", "host-gw", "bgp"]


def _pod(name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [{"containerPort": 8080}]}]}}


def bring_up(folder: Path, mode: str, nat: bool = True) -> Lab:
    topo = {"apiVersion": "testbed/v1alpha1", "kind": "Topology", "name": NAME, "nodes": 3,
            "networking": {"dualStack": True, "network": mode, "natOutgoing": nat},
            "loadBalancer": {"pools": ["198.51.100.0/28"]},
            "manifests": [_pod("a", "node1"), _pod("a2", "node1"), _pod("b", "node2"), _pod("c", "node3"),
                          {**_pod("m", "node1"), "spec": {"containers": [
                              {"name": "c", "ports": [{"containerPort": 8080}]}]}},
                          {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb"},
                           "spec": {"type": "LoadBalancer", "selector": {"app": "b"},
                                    "ports": [{"port": 80, "targetPort": 8080}]}}]}
    return up_from(topo, folder)


