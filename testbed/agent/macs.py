"""MAC addresses derived from IPv4 addresses: 0a:58 and the address, as OVN-Kubernetes derives pod MACs.

Whatever is recreated at the same IP (a pod, a restarted node's link, a bridge) comes back with the same MAC, so
no neighbour entry anywhere in the lab goes stale and no gratuitous ARP is needed.
"""

from __future__ import annotations


def ip_mac(ipv4: str) -> str:
    return "0a:58:" + ":".join(f"{int(b):02x}" for b in ipv4.split("."))
