"""A Service that selects no ready pod answers nobody: said as a warning (the rules are right; the selector or
the pods are not), with the selector and the pods whose labels come closest to it."""

from __future__ import annotations

from testbed.checks import Finding, fail, ok
from testbed.plan.cluster import Plan, PodPlan
from testbed.plan.services import ServicePlan


def _closest(svc: ServicePlan, selector: dict[str, str], pods: list[PodPlan]) -> list[str]:
    """The namespace's pods by how many of the selector's labels they carry, best first (three at most)."""
    scored = []
    for pod in pods:
        if pod.namespace != svc.namespace:
            continue
        match = sum(pod.labels.get(k) == v for k, v in selector.items())
        if match:
            labels = ", ".join(f"{k}={pod.labels[k]}" for k in selector if k in pod.labels)
            scored.append((-match, pod.key, f"{pod.key} ({match} of {len(selector)} labels: {labels})"))
    return [line for *_, line in sorted(scored)[:3]]


def check(plan: Plan) -> list[Finding]:
    out = []
    for svc in plan.services:
        if svc.type == "ExternalName" or svc.selector is None:
            continue
        ready = [e for e in svc.endpoints if e.ready or svc.publish_not_ready]
        selector = ",".join(f"{k}={v}" for k, v in svc.selector.items())
        if ready:
            out.append(ok("endpoints", svc.key, f"Service {svc.key}: {len(ready)} ready endpoint(s)"))
            continue
        why = f"{len(svc.endpoints)} pod(s) match, none ready" if svc.endpoints else "no pod matches its selector"
        closest = _closest(svc, svc.selector, plan.pods) if not svc.endpoints else [e.pod or "" for e in svc.endpoints]
        out.append(fail("endpoints", svc.key, f"Service {svc.key} has no endpoints: {why} (selector {selector})",
                        [f"selector: {selector}", *[f"closest: {c}" for c in closest]] if closest else
                        [f"selector: {selector}", f"no pod in namespace {svc.namespace} carries any of its labels"],
                        "fix the selector or the pods' labels; connections to it are rejected", status="warn"))
    return out
