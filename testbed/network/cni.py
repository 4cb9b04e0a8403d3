"""The pod wiring a topology asks for (`cni:`), on the host's side: each node's conflist in /etc/cni/net.d and,
for a user's plugins, their binaries in the node (/run/testbed/cni/bin, first on CNI_PATH). `reference` is
Debian's containernetworking-plugins as a cluster would chain them: bridge on the node's pod bridge with
host-local IPAM over the node's ranges (the IPs testbed planned asked through the `ips` capability), portmap for
hostPorts, bandwidth for the kubelet's annotations, tuning. testbed's node-level network (vxlan, host-gw, bgp)
joins the nodes, as Flannel delegates pods to bridge. `builtin` keeps the agent's own wiring."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from testbed.actions import Context, each
from testbed.agent.cni import fill, known_bug
from testbed.model.topology import CniPlugins, Topology
from testbed.network.bridge import BRIDGE
from testbed.plan.cluster import NodePlan, Plan
from testbed.runtime import agent

__all__ = ["known_bug"]
CONF_DIR = "/etc/cni/net.d"
NETWORK = "testbed"
DEFAULT_TIMEOUT = 10.0


def mode(topo: Topology) -> str:
    return "custom" if isinstance(topo.cni, CniPlugins) else topo.cni


def settings(topo: Topology) -> dict[str, Any] | None:
    """What the node's agent needs to know of CNI (None: the built-in wiring, whose pods' digests stay)."""
    if topo.cni == "builtin":
        return None
    return {"mode": mode(topo), "timeout": topo.cni.timeout if isinstance(topo.cni, CniPlugins)
            else DEFAULT_TIMEOUT}


def reference(plan: Plan, node: NodePlan) -> dict[str, Any]:
    ranges = [[{"subnet": node.cidr4, "gateway": node.gateway4}]]
    routes = [{"dst": "0.0.0.0/0"}]
    if node.cidr6:
        ranges.append([{"subnet": node.cidr6, "gateway": node.gateway6}])
        routes.append({"dst": "::/0"})
    return {"cniVersion": "1.0.0", "name": NETWORK, "plugins": [
        {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
         "mtu": plan.pod_mtu, "capabilities": {"ips": True, "mac": True},
         "ipam": {"type": "host-local", "ranges": ranges, "routes": routes}},
        {"type": "portmap", "snat": True, "capabilities": {"portMappings": True}},
        {"type": "bandwidth", "capabilities": {"bandwidth": True}},
        {"type": "tuning", "sysctl": {"net.ipv4.conf.all.rp_filter": "0"}}]}


def conflist(plan: Plan, node: NodePlan) -> tuple[str, str] | None:
    """The node's conflist: its file name and text."""
    cni = plan.topology.cni
    if cni == "reference":
        return "10-testbed.conflist", json.dumps(reference(plan, node), indent=1)
    if isinstance(cni, CniPlugins):
        text = fill(Path(cni.conflist).read_text(), {"podCIDR": node.cidr4, "podCIDRv6": node.cidr6 or "",
                                                     "nodeName": node.name})
        return Path(cni.conflist).name, text
    return None


def prepare(ctx: Context) -> None:
    """Every node's conflist (the only one in its folder, so it is the one picked) and the user's plugins."""
    plan = ctx.plan
    cni = plan.topology.cni

    def one(node: NodePlan) -> None:
        found = conflist(plan, node)
        if found is None:
            return
        name, text = found
        if isinstance(cni, CniPlugins):
            target = ctx.run_dir(node.name) / "cni" / "bin"
            target.mkdir(parents=True, exist_ok=True)
            for binary in Path(cni.binDir).iterdir():
                if binary.is_file():
                    shutil.copy2(binary, target / binary.name)
        agent.call(ctx.run_dir(node.name), "files", files={f"{CONF_DIR}/{name}": text}, prune=[CONF_DIR])

    each(one, plan.nodes)
