"""Names the host side shares with the agents about namespaces and routes: the route protocol numbers that mark
each owner's routes, and the folder of named namespaces (where labs made before the fabric machine kept theirs).
The host enters no machine's namespace: each machine's agent does its own netlink work (agent/netops.py)."""

from __future__ import annotations

HOST_NETNS_DIR = "/run/netns"


# Route protocol numbers (rtnetlink's rtm_protocol) that mark the routes testbed makes, one per owner, so each
# owner finds and removes exactly its own routes, and `ip route` shows who made a route.
PROTO_HOST_GW = 201  # host-gw: peers' pod ranges via their underlay address
PROTO_ROUTER = 202  # on the router: pod ranges via nodes, in modes where it does not learn them by BGP
PROTO_DEFAULT = 203  # nodes' default route through the router
PROTO_POD = 204  # the agent's host routes to pods that live outside their node's range (bgp mode)
PROTO_NAMES = {PROTO_HOST_GW: "host-gw", PROTO_ROUTER: "static", PROTO_DEFAULT: "default", PROTO_POD: "pod",
               2: "kernel",
               3: "boot", 4: "static", 12: "bird", 186: "bgp"}
