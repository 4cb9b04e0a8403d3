"""The node agent: one process per node container that owns the pods' netns, veths and workload sockets.

Runs under the node image's python3 with only the stdlib and pyroute2 (mounted from the host's install).
"""
