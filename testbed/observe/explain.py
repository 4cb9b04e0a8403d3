"""`testbed policy explain`: the NetworkPolicy model's answer for one flow, from the lab's desired state."""

from __future__ import annotations

from typing import Any

from testbed import lab
from testbed.errors import InvalidInput, NotFound, Problem
from testbed.plan.cluster import Plan, PodPlan
from testbed.policy.evaluate import decide


def _pod(plan: Plan, ref: str) -> PodPlan | None:
    ns, _, name = ref.rpartition("/")
    return next((p for p in plan.pods if p.namespace == (ns or "default") and p.name == name), None)


def _endpoint(plan: Plan, ref: str, lab_name: str) -> tuple[PodPlan | None, str]:
    """A pod (NS/POD) or an address; an address that is a pod's is that pod."""
    if ref.replace(".", "").isdigit() or ":" in ref:
        return next((p for p in plan.pods if ref in (p.ipv4, p.ipv6)), None), ref
    pod = _pod(plan, ref)
    if pod is None:
        raise NotFound(f"no pod {ref} in lab {lab_name}")
    return pod, pod.ipv4


def explain(name: str, source: str, target: str) -> dict[str, Any]:
    _, plan = lab.current_plan(name)
    where, _, proto = target.rpartition("/")
    if not proto.isalpha():  # no /PROTO: the slash, if any, is the namespace's
        where, proto = target, ""
    host, sep, port = where.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InvalidInput([Problem("testbed policy explain", "TARGET",
                                    f"{target!r} is not NS/POD:PORT[/PROTO] or IP:PORT[/PROTO]")])
    protocol = (proto or "tcp").upper()
    if protocol not in ("TCP", "UDP", "SCTP"):
        raise InvalidInput([Problem("testbed policy explain", "TARGET", f"unknown protocol {proto!r}")])
    src, src_ip = _endpoint(plan, source, name)
    dst, dst_ip = _endpoint(plan, host.strip("[]"), name)
    verdict = decide(plan.policies, plan.namespaces, src, src_ip, dst, dst_ip, int(port), protocol)
    return {"from": source, "to": host, "port": int(port), "protocol": protocol.lower(), **verdict.as_json()}
