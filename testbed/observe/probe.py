"""`testbed probe`: one connection from a pod or a machine to an address, a Service or a name
(runtime/probing.py makes the try)."""

from __future__ import annotations

from typing import Any

from testbed.errors import InvalidInput, NotFound, Problem
from testbed.plan.cluster import Plan
from testbed.runtime.probing import connect


def address(plan: Plan, target: str) -> tuple[str, int]:
    """'IP:PORT', '[IPv6]:PORT', 'svc/NS/NAME:PORT' (its first cluster IP), 'NS/POD:PORT' (its first IP) or
    'NAME:PORT' (resolved in the source, as the pod would)."""
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InvalidInput([Problem("testbed probe", "TARGET", f"{target!r} is not HOST:PORT")])
    host = host.strip("[]")
    if "/" in host and not host.startswith("svc/"):
        pod = next((p for p in plan.pods if p.key == host), None)
        if pod is None:
            raise NotFound(f"no pod {host} in lab {plan.lab} (a Service is svc/NS/NAME; pods: "
                           f"{', '.join(p.key for p in plan.pods)})")
        return pod.ipv4 or pod.ipv6 or "", int(port)
    if host.startswith("svc/"):
        ns, _, svc_name = host[4:].rpartition("/")
        svc = next((s for s in plan.services if s.namespace == (ns or "default") and s.name == svc_name), None)
        if svc is None:
            raise NotFound(f"no Service {ns or 'default'}/{svc_name} in lab {plan.lab} (Services: "
                           f"{', '.join(s.key for s in plan.services)})")
        if not svc.cluster_ips:
            raise InvalidInput([Problem("testbed probe", "TARGET", f"Service {svc.key} has no cluster IP "
                                                                   "(headless or ExternalName): probe a name")])
        host = svc.cluster_ips[0]
    return host, int(port)


def probe(plan: Plan, source: str, target: str, protocol: str = "tcp", timeout: float = 2.0) -> dict[str, Any]:
    host, port = address(plan, target)
    return connect(plan, source, host, port, protocol, timeout)
