"""The `testbed` command: one module per group of verbs, each registering its verbs on the group in base.py.
A new verb goes in the module of its kind (or a new one), and in VERBS here: a verb's module is imported only
when that verb runs, so a command starts with what it uses.

Exit codes: 0 ok, 1 failed while acting, 2 bad input or a refused request (nothing changed), 3 not found,
4 environment problem.
"""

from testbed.cli.base import Group, main

VERBS = {
    "apply": "labs", "delete": "labs", "down": "labs", "list": "labs", "move": "labs", "schema": "labs",
    "status": "labs", "up": "labs", "use": "labs",
    "capture": "packets", "trace": "packets",
    "cni": "cni",
    "describe": "observe", "diagnose": "observe", "events": "observe", "graph": "observe", "ui": "observe",
    "doctor": "host", "images": "host", "version": "host",
    "exec": "pods", "logs": "pods",
    "fault": "faults", "scenario": "faults",
    "ingresses": "edge", "tls": "edge",
    "policy": "net", "probe": "net", "routes": "net", "services": "net",
}
Group.verbs = VERBS

__all__ = ["VERBS", "main"]
