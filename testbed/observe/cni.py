"""`testbed cni check` (CNI CHECK of every pod, or with the built-in wiring the kernel's view of each) and
`testbed cni test` (the conformance battery of agent/cnitest.py on a running lab: the single-node checks on the
first node, then a pod-to-pod connection between the first two nodes, with no NAT, when the plugin's addresses
fall in the nodes' pod ranges, which the lab's pod network routes). Presets test testbed's own plugin
(`builtin`) and Debian's reference plugins (`reference`)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

from testbed import lab, state
from testbed.actions import each
from testbed.agent.cnitest import small_range
from testbed.checks import Observation
from testbed.errors import InvalidInput, NotFound, Problem
from testbed.model.cni import check as check_files
from testbed.network.cni import known_bug
from testbed.network.pods import check_pods
from testbed.plan.cluster import Plan
from testbed.runtime import podexec

CHECK_WAIT = 0.5  # seconds per pod a CNI CHECK may take on a loaded machine (four plugin execs)
LOCK_WAIT = 15.0  # seconds first: the agent may be in a sync the control plane started (an apply's readiness)
PRESETS = {
    "builtin": {"cniVersion": "1.1.0", "name": "cnitest", "plugins": [
        {"type": "testbed", "bridge": "cni0",
         "ipam": {"subnet": "{{podCIDR}}", "dataDir": "/run/testbed/cnitest/ipam"}}]},
    "reference": {"cniVersion": "1.0.0", "name": "cnitest", "plugins": [
        {"type": "bridge", "bridge": "cni0", "isGateway": True, "hairpinMode": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": "{{podCIDR}}"}]], "routes": [{"dst": "0.0.0.0/0"}],
                  "dataDir": "/run/testbed/cnitest/ipam"}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
        {"type": "tuning", "sysctl": {"net.ipv4.conf.all.rp_filter": "0"}}]},
}


def check(name: str) -> list[dict[str, Any]]:
    """Each pod: ok, or what CHECK (or the kernel) says is wrong."""
    _, plan = lab.current_plan(name)
    if plan.topology.cni == "builtin":
        return [{"pod": f.subject, "ok": f.status == "ok", "error": "" if f.status == "ok" else f.message}
                for f in check_pods(Observation(plan), deep=True)]
    by_netns = {p.netns: p for p in plan.pods}
    # CHECK execs every plugin of the chain for each pod: the agent gets time for that, each node at once
    most = max(Counter(p.node for p in plan.pods).values(), default=0)
    obs = Observation(plan, wait=LOCK_WAIT + CHECK_WAIT * most)
    replies = dict(zip([n.name for n in plan.nodes],
                       each(lambda n: obs.call(n.name, "cni_check"), plan.nodes), strict=True))
    out = []
    for node in plan.nodes:
        reply = replies[node.name]
        if reply is None:  # its pods are not passed over: each fails, with why
            why = obs.failures.get(node.name, "the machine is not running")
            out += [{"pod": p.key, "node": node.name, "ok": False, "error": f"node {node.name}: {why}"}
                    for p in plan.pods_on(node.name)]
            continue
        for netns, error in reply["pods"].items():
            pod = by_netns.get(netns)
            bug = known_bug(error or "")
            out.append({"pod": pod.key if pod else netns, "node": node.name, "ok": error is None or bool(bug),
                        "error": f"{error} (a known plugin bug: {bug})" if bug else error or ""})
    return out


def _stage(name: str, plan: Plan, nodes: list[str], bin_dir: Path | None) -> str:
    """The plugins copied into each node used (seen there at /run/testbed/cnitest/bin)."""
    for node in nodes:
        target = state.run_dir(name) / node / "cnitest" / "bin"
        shutil.rmtree(target.parent, ignore_errors=True)
        target.mkdir(parents=True)
        if bin_dir is not None:
            for binary in bin_dir.iterdir():
                if binary.is_file():
                    shutil.copy2(binary, target / binary.name)
    return "/run/testbed/cnitest/bin"


def _run(plan: Plan, node: str, *args: str, scratch: bool = True) -> Any:
    """One step of agent/cnitest.py in the node (in its scratch node's netns, unless scratch is False)."""
    machine = podexec.running(plan.node(node).container, None)
    prefix = ["ip", "netns", "exec", "cnitest-node"] if scratch else []
    got = machine.exec([*prefix, "python3", "-m", "testbed.agent.cnitest", *args])
    try:
        return json.loads(got.stdout)
    except ValueError:
        return {"error": (got.stdout + got.stderr).strip()[-500:]}


def test(name: str, bin_dir: str | None, conflist: str | None, preset: str | None) -> list[dict[str, Any]]:
    _, plan = lab.current_plan(name)
    if preset is not None:
        text, folder = json.dumps(PRESETS[preset]), None
    else:
        assert bin_dir is not None and conflist is not None
        folder, path = Path(bin_dir).resolve(), Path(conflist).resolve()
        if not folder.is_dir():
            raise InvalidInput([Problem("testbed cni test", "DIR", f"no such folder: {folder}")])
        if not path.is_file():
            raise InvalidInput([Problem("testbed cni test", "CONFLIST", f"no such file: {path}")])
        problems = check_files(path, folder)
        if problems:
            raise InvalidInput(problems)
        text = path.read_text()
    if not plan.nodes:
        raise NotFound(f"lab {name} has no nodes")
    nodes = [plan.node(n.name) for n in plan.nodes[:2]]
    where = _stage(name, plan, [n.name for n in nodes], folder)
    each(lambda n: _run(plan, n.name, "setup", small_range(n.cidr4), scratch=False), nodes)
    try:
        first = nodes[0]
        out = _run(plan, first.name, "battery", where, text, first.name, small_range(first.cidr4))
        if isinstance(out, dict):
            return [{"check": "the battery ran", "spec": "", "status": "fail", "detail": out.get("error", "")}]
        return out + _cross(plan, [n.name for n in nodes], where, text)
    finally:
        each(lambda n: _run(plan, n.name, "teardown", small_range(n.cidr4), scratch=False), nodes)


def _cross(plan: Plan, nodes: list[str], where: str, text: str) -> list[dict[str, Any]]:
    check, spec = "pods on two nodes reach each other with no NAT", "Kubernetes network model (via the plugin)"
    if len(nodes) < 2:
        return [{"check": check, "spec": spec, "status": "skip", "detail": "the lab has one node"}]
    a, b = plan.node(nodes[0]), plan.node(nodes[1])
    try:
        server = _run(plan, b.name, "serve", where, text, b.name, small_range(b.cidr4), "b")
        if server.get("error") or not server.get("ip"):
            return [{"check": check, "spec": spec, "status": "fail", "detail": f"ADD on {b.name}: {server}"}]
        routed = any(ip_address(server["ip"]) in ip_network(n.cidr4) for n in plan.nodes)
        client = _run(plan, a.name, "connect", where, text, a.name, small_range(a.cidr4), "a", server["ip"])
        if not routed:
            return [{"check": check, "spec": spec, "status": "skip",
                     "detail": f"{server['ip']} is outside the nodes' pod ranges: the plugin routes it itself"}]
        ok = bool(client.get("ip")) and client.get("seen") == client.get("ip")
        return [{"check": check, "spec": spec, "status": "pass" if ok else "fail",
                 "detail": f"{a.name} {client.get('ip')} → {b.name} {server['ip']}: seen as "
                           f"{client.get('seen') or client.get('error') or 'nothing'}"}]
    finally:
        each(lambda n: _run(plan, n[0], "del", where, text, n[0], small_range(n[1]), n[2]),
             [(a.name, a.cidr4, "a"), (b.name, b.cidr4, "b")])
