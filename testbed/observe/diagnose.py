"""`testbed diagnose`: the troubleshooting checklist of every Kubernetes networking guide, run for real on the
lab, as ordered checks. Each step of the lab's pipeline checks what it made, deep: machines and agents (asked
at once, each for a bounded time), the underlay and the external segment, the router's routes, pods (their
addresses, routes and veths as the kernel holds them), the pod network (VXLAN entries, host-gw routes, BGP
sessions and what BIRD really exports and learns) and real traffic between the nodes, then every installer:
cluster DNS answering from every node, egress NAT seen from outside, kube-proxy's and the policies' rules read
back from each kernel, Services without endpoints.

Modules run one after another (each asks its agents in parallel), so the order reads like the checklist."""

from __future__ import annotations

import time
from typing import Any

from testbed import lab
from testbed.checks import Observation
from testbed.observe.status import findings


def diagnose(name: str) -> dict[str, Any]:
    start = time.monotonic()
    found = lab.read_synced(name, lambda plan: findings(Observation(plan), deep=True),
                            lambda found: any(f.status == "fail" for f in found))
    counts = {s: sum(f.status == s for f in found) for s in ("ok", "warn", "fail")}
    return {"lab": name, "ok": counts["fail"] == 0, "counts": counts, "seconds": round(time.monotonic() - start, 2),
            "findings": [f.as_json() for f in found]}
