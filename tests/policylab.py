"""The NetworkPolicy lab (tests/e2e/policy.yaml: the upstream model), in a pod network and kube-proxy mode."""

from pathlib import Path

import yaml
from relab import up_from

from testbed.pytest_plugin import Lab

HERE = Path(__file__).parent / "e2e"
NAME = "e2e-pol"


def bring_up(folder: Path, network: str, proxy: str) -> Lab:
    topo = yaml.safe_load((HERE / "policy.yaml").read_text())
    topo["networking"]["network"], topo["kubeProxy"]["mode"] = network, proxy
    return up_from(topo, folder, HERE)
