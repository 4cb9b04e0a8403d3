"""Tell a pod's neighbours its address is at a new MAC, as the CNI bridge plugin does: a gratuitous ARP for
IPv4 and an unsolicited neighbour advertisement for IPv6. Without it, a reused pod IP stays mapped to the MAC
of the pod that had it before until the neighbour entries time out."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct

ETH_P_ARP = 0x0806


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def garp(ifname: str, mac: str, ip: str) -> None:
    hw, addr = _mac(mac), socket.inet_aton(ip)
    frame = b"\xff" * 6 + hw + struct.pack("!H", ETH_P_ARP)
    frame += struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + hw + addr + b"\x00" * 6 + addr
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((ifname, 0))
        s.send(frame)


def unsolicited_na(ifname: str, mac: str, ip: str) -> None:
    # type 136, override flag, the target, and the target link-layer address option; the kernel fills the checksum
    body = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + ipaddress.IPv6Address(ip).packed
    body += struct.pack("!BB", 2, 1) + _mac(mac)
    with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as s:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        s.sendto(body, ("ff02::1", 0, 0, socket.if_nametoindex(ifname)))


def announce(ifname: str, mac: str, ipv4: str, ipv6: str | None) -> None:
    """Best effort: a lost announcement only delays traffic until neighbour entries expire."""
    with contextlib.suppress(OSError):
        garp(ifname, mac, ipv4)
    if ipv6:
        with contextlib.suppress(OSError):
            unsolicited_na(ifname, mac, ipv6)
