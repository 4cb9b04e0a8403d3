"""The `testbed` command: one module per group of verbs, each registering its verbs on the group in base.py.
A new verb goes in the module of its kind (or a new one, imported here).

Exit codes: 0 ok, 1 failed while acting, 2 bad input or a refused request (nothing changed), 3 not found,
4 environment problem.
"""

from testbed.cli import cni, edge, faults, host, labs, net, observe, packets, pods
from testbed.cli.base import main

__all__ = ["cni", "edge", "faults", "host", "labs", "main", "net", "observe", "packets", "pods"]
