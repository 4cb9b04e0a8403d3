"""The reference-plugins lab: the NetworkPolicy model's pods wired by Debian's CNI plugins (cni: reference), with
a hostPort pod and an iperf3 server whose bandwidth annotations the bandwidth plugin enforces; brought up (or
switched) in a pod network mode, one for the session."""

from pathlib import Path

import yaml
from relab import up_from

from testbed.pytest_plugin import Lab

HERE = Path(__file__).parent / "e2e"
NAME = "e2e-cniref"
MODES = ["vxlan", "bgp"]
INGRESS, EGRESS = 20_000_000, 10_000_000
EXTRA = [
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hp"},
     "spec": {"nodeName": "node2", "containers": [{"name": "c", "ports": [{"containerPort": 8080,
                                                                            "hostPort": 8088}]}]}},
    {"apiVersion": "v1", "kind": "Pod",
     "metadata": {"name": "bw", "annotations": {"kubernetes.io/ingress-bandwidth": "20M",
                                                 "kubernetes.io/egress-bandwidth": "10M"}},
     "spec": {"nodeName": "node2", "containers": [{"name": "c", "command": ["iperf3", "-s", "-p", "5201"],
                                                    "ports": [{"containerPort": 5201}]}]}},
]


def bring_up(folder: Path, mode: str) -> Lab:
    topo = yaml.safe_load((HERE / "policy.yaml").read_text())
    topo.update(name=NAME, cni="reference")
    topo["networking"]["network"] = mode
    topo["manifests"] = [*topo["manifests"], *EXTRA]
    return up_from(topo, folder, HERE)
