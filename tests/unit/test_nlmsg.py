"""The hand-encoded rtnetlink requests say what pyroute2's own encoding of the same request says: both are
decoded by pyroute2's parsers and compared field by field."""

import socket

import pytest
from pyroute2.iproute.linux import IPBatch
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from testbed.agent import nlmsg

NUD_PERMANENT, NUD_NOARP, NTF_SELF, RTNH_F_ONLINK = 0x80, 0x40, 0x2, 4


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
