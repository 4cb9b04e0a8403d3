"""Tell a pod's neighbours its address is at a new MAC, as the CNI bridge plugin does: a gratuitous ARP for
IPv4 and an unsolicited neighbour advertisement for IPv6. Without it, a reused pod IP stays mapped to the MAC
of the pod that had it before until the neighbour entries time out.

The frames are sent from the node onto its bridge, which floods them to every pod, through one packet socket
kept open: closing a packet socket waits for an RCU grace period, which would cost milliseconds per pod.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
ALL_NODES = ipaddress.IPv6Address("ff02::1")


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def garp_frame(mac: str, ip: str) -> bytes:
    hw, addr = _mac(mac), socket.inet_aton(ip)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + hw + addr + b"\x00" * 6 + addr
    return b"\xff" * 6 + hw + struct.pack("!H", ETH_P_ARP) + arp


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def na_frame(mac: str, ip: str) -> bytes:
    """An unsolicited neighbour advertisement (override flag, target link-layer option) to all nodes."""
    src = ipaddress.IPv6Address(ip)
    icmp = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + src.packed + struct.pack("!BB", 2, 1) + _mac(mac)
    pseudo = src.packed + ALL_NODES.packed + struct.pack("!I3xB", len(icmp), 58)
    icmp = icmp[:2] + struct.pack("!H", _checksum(pseudo + icmp)) + icmp[4:]
    ip6 = struct.pack("!IHBB", 6 << 28, len(icmp), 58, 255) + src.packed + ALL_NODES.packed
    return b"\x33\x33\x00\x00\x00\x01" + _mac(mac) + struct.pack("!H", ETH_P_IPV6) + ip6 + icmp


class Announcer:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)

    def announce(self, bridge: str, mac: str, ipv4: str, ipv6: str | None) -> None:
        """Best effort: a lost announcement only delays traffic until neighbour entries expire."""
        frames = [garp_frame(mac, ipv4)] + ([na_frame(mac, ipv6)] if ipv6 else [])
        for frame in frames:
            with contextlib.suppress(OSError):
                self.sock.sendto(frame, (bridge, 0))
