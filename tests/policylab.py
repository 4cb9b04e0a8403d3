"""The NetworkPolicy lab (tests/e2e/policy.yaml: the upstream model), in a pod network and kube-proxy mode; and
applying a case of netpol_cases, probing its full matrix and holding each cell to the spec, for every suite."""

from pathlib import Path

import yaml
from netpol_cases import NAMESPACES, PORTS, PROTOCOLS, Case, expect, namespace
from relab import up_from

from testbed.observe import matrix
from testbed.pytest_plugin import Lab

HERE = Path(__file__).parent / "e2e"
NAME = "e2e-pol"


def bring_up(folder: Path, network: str, proxy: str) -> Lab:
    topo = yaml.safe_load((HERE / "policy.yaml").read_text())
    topo["networking"]["network"], topo["kubeProxy"]["mode"] = network, proxy
    return up_from(topo, folder, HERE)


def apply_case(lab: Lab, case: Case, folder: Path) -> Path:
    ips = {p.key: p.ipv4 for p in lab.plan.pods}
    path = folder / f"{case.name}.yaml"
    path.write_text(yaml.safe_dump_all(case.policies(ips) + case.manifests))
    lab.apply(path)
    return path


def undo_case(lab: Lab, case: Case, path: Path) -> None:
    policies = path.with_suffix(".policies.yaml")
    policies.write_text(yaml.safe_dump_all(case.policies({p.key: p.ipv4 for p in lab.plan.pods})))
    lab.delete(policies)
    if case.manifests:  # relabelled namespaces go back to their labels
        restore = path.with_suffix(".restore.yaml")
        restore.write_text(yaml.safe_dump_all([namespace(m["metadata"]["name"]) for m in case.manifests]))
        lab.apply(restore)


def check(lab: Lab, case: Case, via: str = "pod", resolves: bool = True) -> None:
    """resolves=False: the sources cannot look names up, so via dns even a pod's own name fails."""
    # two tries, not the command line's three: each blocked cell waits out every try, and an allowed flow
    # inside one machine answers the first (names keep three: a lookup has its own timeout to ride out)
    cells = matrix.run(lab.name, NAMESPACES, [], PORTS, PROTOCOLS, via, tries=2 if via != "dns" else 3)
    assert len(cells) == 9 * 9 * len(PORTS) * len(PROTOCOLS)
    want = expect if resolves else (lambda case, s, d, pr, po: case.allows(s, d, pr, po))
    wrong = [f"{c.protocol}/{c.port} {c.source}→{c.destination}: observed {c.result}"
             for c in cells if c.observed != want(case, c.source, c.destination, c.protocol, c.port)]
    assert not wrong, f"{case.name} via {via}: {len(wrong)} cells differ from the spec:\n" + "\n".join(wrong[:20])
    assert all(c.agrees for c in cells), "the datapath agrees with the spec but not with the model"
