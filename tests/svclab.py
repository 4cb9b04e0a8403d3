"""The Services lab (tests/e2e/services.yaml) and what its tests share: one lab for the session, switched
between kube-proxy modes with `up`, and helpers that read what a request reached."""

from collections import Counter
from pathlib import Path

import docker
import yaml
from relab import up_from

from testbed.pytest_plugin import Lab

HERE = Path(__file__).parent / "e2e"
NAME = "e2e-svc"
EXT = f"{NAME}-ext2"
EXT_IP = "203.0.113.11"


def bring_up(folder: Path, mode: str) -> Lab:
    topo = yaml.safe_load((HERE / "services.yaml").read_text())
    topo["kubeProxy"]["mode"] = mode
    return up_from(topo, folder, HERE)


def service(lab: Lab, name: str):
    return next(s for s in lab.plan.services if s.name == name)


def sh(container: str, command: str) -> tuple[int, str]:
    result = docker.from_env().containers.get(container).exec_run(["sh", "-c", command])
    return result.exit_code, result.output.decode()


def hits(lab: Lab, pod: str, url: str, count: int) -> Counter:
    """What count requests from inside pod got, one curl each (one exec for all of them)."""
    out = lab.exec(pod, f"for i in $(seq {count}); do curl -s --max-time 2 -g '{url}'; echo; done").stdout
    return Counter(line for line in out.splitlines() if line)


def node_addresses(lab: Lab) -> set[str]:
    """Every address a node masquerades to, as netexec prints a client (IPv6 in brackets)."""
    v6 = {f"[{a}]" for n in lab.plan.nodes for a in (n.underlay_ip6, n.gateway6, n.vtep6) if a}
    return {a for n in lab.plan.nodes for a in (n.underlay_ip, n.gateway4, n.vtep4)} | v6
