"""The hand-encoded rtnetlink requests say what pyroute2's own encoding of the same request says: both are
decoded by pyroute2's parsers and compared field by field."""

import os
import socket

import pytest
from pyroute2.iproute.linux import IPBatch
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from testbed.agent import nlmsg

NUD_PERMANENT, NUD_NOARP, NTF_SELF, RTNH_F_ONLINK, IFA_F_NODAD = 0x80, 0x40, 0x2, 4, 0x2


def _decoded(cls, data: bytes) -> dict:
    msg = cls(data)
    msg.decode()
    return {"header": {k: msg["header"][k] for k in ("type", "flags", "length")},
            "fields": {f[0]: msg[f[0]] for f in cls.fields},
            "attrs": sorted((name, str(value)) for name, value in msg["attrs"])}


def _pyroute2(call) -> bytes:
    ipb = IPBatch()
    call(ipb)
    return bytes(ipb.batch)


@pytest.mark.parametrize("dst,mac", [("10.244.3.0", "02:aa:bb:cc:dd:ee"), ("fd00:10:244:3::", "02:aa:bb:cc:dd:01")])
def test_a_neighbour(dst, mac):
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    mine = nlmsg.neigh(7, dst, mac, NUD_PERMANENT)
    theirs = _pyroute2(lambda b: b.neigh("replace", ifindex=7, dst=dst, lladdr=mac, state=NUD_PERMANENT,
                                         family=family))
    assert _decoded(ndmsg, mine) == _decoded(ndmsg, theirs)


def test_an_fdb_entry():
    mine = nlmsg.fdb(7, "02:aa:bb:cc:dd:ee", "100.64.0.12", NUD_PERMANENT | NUD_NOARP, NTF_SELF)
    theirs = _pyroute2(lambda b: b.fdb("replace", ifindex=7, lladdr="02:aa:bb:cc:dd:ee", dst="100.64.0.12",
                                       state=NUD_PERMANENT | NUD_NOARP, flags=NTF_SELF))
    assert _decoded(ndmsg, mine) == _decoded(ndmsg, theirs)


@pytest.mark.parametrize("dst,gateway", [("10.244.3.0/24", "10.244.3.0"), ("fd00:10:244:3::/64", "fd00:10:244:3::")])
def test_a_route(dst, gateway):
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    mine = nlmsg.route(dst, gateway, 7, RTNH_F_ONLINK)
    theirs = _pyroute2(lambda b: b.route("replace", dst=dst, gateway=gateway, oif=7, flags=RTNH_F_ONLINK,
                                         family=family))
    assert _decoded(rtmsg, mine) == _decoded(rtmsg, theirs)


def _whole(cls, data: bytes) -> dict:
    """Everything the message says, nested attributes included; not who sent it or its sequence number."""
    msg = cls(data)
    msg.decode()
    out = msg.dump()
    out["header"] = {k: out["header"][k] for k in ("length", "type", "flags")}
    # pyroute2 puts 0.0.0.0 in an IPv4 default route's destination; with a prefix length of 0 it says nothing
    out["attrs"] = [a for a in out["attrs"] if not (a[0] == "RTA_DST" and out.get("dst_len") == 0)]
    out["header"]["length"] -= 8 if len(out["attrs"]) != len(msg.dump()["attrs"]) else 0
    return out


def test_a_pod_veth_born_enslaved_with_its_peer_in_the_pod():
    fd = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        mine = nlmsg.veth("tbabc", 1450, 3, "eth0", fd, "0a:58:0a:f4:01:05")
        theirs = _pyroute2(lambda b: b.link("add", ifname="tbabc", kind="veth", mtu=1450, master=3,
                                            num_tx_queues=1, num_rx_queues=1,
                                            peer={"ifname": "eth0", "net_ns_fd": fd, "mtu": 1450,
                                                  "address": "0a:58:0a:f4:01:05", "num_tx_queues": 1,
                                                  "num_rx_queues": 1}))
    finally:
        os.close(fd)
    assert _whole(ifinfmsg, mine) == _whole(ifinfmsg, theirs)


def test_no_link_local_address():
    assert _whole(ifinfmsg, nlmsg.no_link_local(2)) == _whole(
        ifinfmsg, _pyroute2(lambda b: b.link("set", index=2, IFLA_AF_SPEC={"attrs": [
            ("AF_INET6", {"attrs": [("IFLA_INET6_ADDR_GEN_MODE", 1)]})]})))


def test_a_hairpin_port_without_link_local_then_up():
    assert _whole(ifinfmsg, nlmsg.port("tbabc")) == _whole(
        ifinfmsg, _pyroute2(lambda b: b.link("set", ifname="tbabc", kind="bridge_slave", mode=1, IFLA_AF_SPEC={
            "attrs": [("AF_INET6", {"attrs": [("IFLA_INET6_ADDR_GEN_MODE", 1)]})]})))
    assert _whole(ifinfmsg, nlmsg.link_up(2)) == _whole(
        ifinfmsg, _pyroute2(lambda b: b.link("set", index=2, state="up")))
    assert _whole(ifinfmsg, nlmsg.link_up(name="tbabc")) == _whole(
        ifinfmsg, _pyroute2(lambda b: b.link("set", ifname="tbabc", state="up")))


@pytest.mark.parametrize("address,prefixlen,flags", [("10.244.1.5", 24, 0), ("fd00:10:244:1::5", 64, IFA_F_NODAD),
                                                      ("10.244.9.5", 32, 0)])
def test_an_address(address, prefixlen, flags):
    mine = nlmsg.addr(2, address, prefixlen, flags)
    theirs = _pyroute2(lambda b: b.addr("add", index=2, address=address, prefixlen=prefixlen,
                                        **({"flags": flags} if flags else {})))
    assert _whole(ifaddrmsg, mine) == _whole(ifaddrmsg, theirs)


@pytest.mark.parametrize("dst,gateway,extra", [
    ("0.0.0.0/0", "10.244.1.1", {}), ("::/0", "fd00:10:244:1::1", {}),
    ("0.0.0.0/0", "10.244.1.1", {"oif": 2, "flags": RTNH_F_ONLINK}),
    ("::/0", "fd00:10:244:1::1", {"oif": 2, "flags": RTNH_F_ONLINK})])
def test_a_default_route(dst, gateway, extra):
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    mine = nlmsg.route(dst, gateway, extra.get("oif"), extra.get("flags", 0), how=nlmsg.ADD)
    theirs = _pyroute2(lambda b: b.route("add", dst=dst, gateway=gateway, family=family, **extra))
    assert _whole(rtmsg, mine) == _whole(rtmsg, theirs)


def test_a_host_route_to_a_pod_from_another_range():
    mine = nlmsg.route("10.244.9.5/32", None, 3, proto=204)
    theirs = _pyroute2(lambda b: b.route("replace", dst="10.244.9.5", dst_len=32, oif=3, family=socket.AF_INET,
                                         proto=204))
    assert _whole(rtmsg, mine) == _whole(rtmsg, theirs)
