"""The hand-read dumps against pyroute2's reading of the same kernel tables, in a scratch network namespace: a
VXLAN device with peers' routes, neighbours and FDB entries, beside entries the comparison must leave out (another
device's, another table's, a route without a gateway)."""

import shutil
import subprocess
import sys

import pytest

SCRIPT = """
import json, socket
from pyroute2 import IPRoute
from testbed.agent import nlbatch, nldump, nlmsg
def fdb(idx, mac, remote):  # as the agent writes a peer's entry (netops.vxlan)
    with nlbatch.open_socket() as sock:
        assert nlbatch.send(sock, nlmsg.fdb(idx, mac, remote, nlmsg.NUD_PERMANENT | nlmsg.NUD_NOARP,
                                            nlmsg.NTF_SELF)) == [0]
for scope in ("all", "default"):  # a host may have turned IPv6 off for new namespaces
    with open(f"/proc/sys/net/ipv6/conf/{scope}/disable_ipv6", "w") as f:
        f.write("0")
with open("/proc/sys/net/ipv6/conf/default/addr_gen_mode", "w") as f:  # no link-local address, so no multicast
    f.write("1")  # report, whose neighbour entries would come while the two readings run
with IPRoute() as ip:
    ip.link("add", ifname="vx", kind="vxlan", vxlan_id=7, vxlan_port=8472, vxlan_learning=0)
    ip.link("add", ifname="other", kind="vxlan", vxlan_id=8, vxlan_port=8473)
    vx, other = ip.link_lookup(ifname="vx")[0], ip.link_lookup(ifname="other")[0]
    for idx in (vx, other):
        ip.link("set", index=idx, state="up")
    ip.addr("add", index=vx, address="10.9.0.1", prefixlen=32)
    for i, (gw, cidr, under) in enumerate([("10.9.0.2", "10.244.2.0/24", "192.0.2.2"),
                                           ("10.9.0.3", "10.244.3.0/24", "192.0.2.3")]):
        mac = f"02:00:00:00:00:0{i + 2}"
        ip.neigh("replace", ifindex=vx, dst=gw, lladdr=mac, state=0x80)
        ip.route("replace", dst=cidr, gateway=gw, oif=vx, flags=4)
        fdb(vx, mac, under)
    ip.neigh("replace", ifindex=vx, dst="fd00::2", lladdr="02:00:00:00:00:02", state=0x80, family=socket.AF_INET6)
    ip.route("replace", dst="fd00:10:244:2::/64", gateway="fd00::2", oif=vx, flags=4, family=socket.AF_INET6)
    ip.neigh("replace", ifindex=other, dst="10.9.0.9", lladdr="02:00:00:00:00:09", state=0x80)
    ip.route("replace", dst="10.244.9.0/24", gateway="10.9.0.9", oif=vx, flags=4, table=100)
    ip.route("replace", dst="10.244.8.0/24", oif=vx)
    fdb(other, "02:00:00:00:00:09", "192.0.2.9")
    theirs = {
        "routes": sorted(f"{r.get_attr('RTA_DST')}/{r['dst_len']}" for f in (socket.AF_INET, socket.AF_INET6)
                         for r in ip.get_routes(family=f, oif=vx, table=254) if r.get_attr("RTA_GATEWAY")),
        "neigh": sorted(n.get_attr("NDA_DST") for f in (socket.AF_INET, socket.AF_INET6)
                        for n in ip.get_neighbours(family=f, ifindex=vx)),
        "fdb": sorted([f.get_attr("NDA_DST"), f.get_attr("NDA_LLADDR")] for f in ip.fdb("dump", ifindex=vx)
                      if f.get_attr("NDA_DST")),
    }
    ours = {
        "routes": sorted(d for f in (socket.AF_INET, socket.AF_INET6) for d in nldump.gateway_routes(f, vx)),
        "neigh": sorted(d for f in (socket.AF_INET, socket.AF_INET6) for d, _ in nldump.neighbours(f, vx)),
        "fdb": sorted([d, m] for d, m in nldump.neighbours(nldump.AF_BRIDGE, vx) if d),
    }
print(json.dumps([theirs, ours]))
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare")
def test_the_dumps_read_what_pyroute2_reads_and_nothing_of_other_devices_or_tables():
    import json

    done = subprocess.run(["unshare", "-n", sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0 and ("Operation not permitted" in done.stderr or "not supported" in done.stderr):
        pytest.skip("no scratch network namespace with VXLAN here: " + done.stderr.strip()[-200:])
    assert done.returncode == 0, done.stderr[-2000:]
    theirs, ours = json.loads(done.stdout)
    assert ours == theirs
    assert ours["routes"] == ["10.244.2.0/24", "10.244.3.0/24", "fd00:10:244:2::/64"]
    assert ours["neigh"] == ["10.9.0.2", "10.9.0.3", "fd00::2"]
    assert ours["fdb"] == [["192.0.2.2", "02:00:00:00:00:02"], ["192.0.2.3", "02:00:00:00:00:03"]]
