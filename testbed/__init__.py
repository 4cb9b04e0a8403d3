"""testbed: a multi-node Kubernetes cluster network on one Linux machine, with real packets.

Kept free of imports: the node agent imports testbed.agent inside containers that have only the stdlib and
pyroute2.
"""

__version__ = "0.1.0"
