"""Pods that run their own processes (a container's command and args, from the node image's programs): the
supervisor entries that run them in their pod. Kept apart from pods.py, which imports pyroute2, so the agent
starts without it."""

from __future__ import annotations

import hashlib
from typing import Any


def process_name(netns: str, container: str) -> str:
    """A pod process's name with the supervisor, which is also its log file's name (logs/<name>.log)."""
    name = f"{netns}.{container}"
    return name if len(name) <= 200 else f"{hashlib.sha1(name.encode()).hexdigest()[:16]}.{container}"


def pod_processes(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The supervisor's entries for pods that run their own processes: each in its pod's netns, with the pod's
    /etc/hosts, resolv.conf and hostname, as `testbed exec` runs commands."""
    out = []
    for spec in specs:
        for container, argv in (spec.get("processes") or {}).items():
            out.append({"name": process_name(spec["netns"], container), "argv": [
                "ip", "netns", "exec", spec["netns"], "unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"',
                spec["hostname"], *argv], "restart": spec.get("restart", "Always")})
    return out
