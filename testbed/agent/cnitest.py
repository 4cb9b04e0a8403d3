"""`testbed cni test`: a conformance battery for CNI plugins, run in a node against a conflist and a plugin
folder, each check citing the part of the CNI spec (SPEC.md, 1.0/1.1) it tests.

The plugins run in a scratch "node" network namespace (`cnitest-node`), joined to the real node by a veth and
given a small range of its own (the top /29 of the node's pod range, as {{podCIDR}}), which the node routes to
it: the plugins make their own bridge and rules there, never touching the lab's, and an address that DEL forgets
to release runs the range out within the battery. Scratch namespaces `cnitest-*` stand for pods. The lab's pod
network carries the range between nodes, so pods on two nodes' scratch nodes reach each other as real pods do.
`teardown` deletes all of it.

    python3 -m testbed.agent.cnitest setup RANGE | teardown RANGE             (in the node)
    ip netns exec cnitest-node python3 -m testbed.agent.cnitest battery BIN CONFLIST NODE RANGE
    ip netns exec cnitest-node python3 -m testbed.agent.cnitest serve|connect|del BIN CONFLIST NODE RANGE TAG"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from ipaddress import ip_network
from typing import Any

from testbed.agent import nsutil
from testbed.agent.cni import Attachment, CniError, Runtime, addresses, fill, load_network
from testbed.agent.iproute import IPRoute
from testbed.agent.nlmsg import ONE_QUEUE

WORK = "/run/testbed/cnitest"
TIMEOUT = 10.0
NODE_NS, UPLINK, NODE_SIDE = "cnitest-node", "up0", "cnitest0"
LINK = ("169.254.77.1", "169.254.77.2")  # the node's end and the scratch node's end of their veth


def small_range(node_cidr: str) -> str:
    net = ip_network(node_cidr)
    return str(list(net.subnets(new_prefix=max(net.prefixlen, 29)))[-1])


def runtime(bin_dir: str, conflist: str, values: dict[str, str]) -> Runtime:
    conf_dir = os.path.join(WORK, "net.d")
    os.makedirs(conf_dir, exist_ok=True)
    for name in os.listdir(conf_dir):
        os.unlink(os.path.join(conf_dir, name))
    with open(os.path.join(conf_dir, "10-test.conflist"), "w") as f:
        f.write(fill(conflist, values))
    return Runtime(timeout=TIMEOUT, path=[bin_dir, "/opt/cni/bin", "/usr/lib/cni"], conf_dir=conf_dir,
                   cache_dir=os.path.join(WORK, "cache"))


def sandbox(name: str) -> Attachment:
    nsutil.create_named(f"/run/netns/{name}")
    with nsutil.entered(f"/run/netns/{name}"), IPRoute() as ipr:
        ipr.link("set", index=1, state="up")
    return Attachment(name, "cnitest", name)


def drop(name: str) -> None:
    nsutil.remove_named(f"/run/netns/{name}")


def kernel(att: Attachment) -> dict[str, Any]:
    """The attachment's interface as the kernel has it: its MAC and addresses."""
    with nsutil.entered(f"/run/netns/{att.netns}"), IPRoute() as ipr:
        found = ipr.link_lookup(ifname=att.ifname)
        if not found:
            return {}
        link = ipr.get_links(found[0])[0]
        return {"mac": link.get_attr("IFLA_ADDRESS"),
                "addresses": {f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=found[0])
                              if a["scope"] == 0}}


class Battery:
    def __init__(self, rt: Runtime) -> None:
        self.rt, self.out, self.made = rt, [], []

    def note(self, check: str, spec: str, ok: bool | None, detail: str) -> None:
        self.out.append({"check": check, "spec": spec, "status": "skip" if ok is None else "pass" if ok else "fail",
                         "detail": detail})

    def att(self, tag: str) -> Attachment:
        att = sandbox(f"cnitest-{tag}")
        self.made.append(att)
        return att

    async def version(self) -> None:
        net, _ = load_network(self.rt.conf_dir)
        for plugin in net["plugins"]:
            try:
                got = await self.rt.exec(plugin, "VERSION", None, {"cniVersion": net["cniVersion"]})
                ok = net["cniVersion"] in got.get("supportedVersions", [])
                self.note(f"VERSION of {plugin['type']}", "SPEC §VERSION: supportedVersions", ok,
                          f"supports {', '.join(got.get('supportedVersions', []))}")
            except CniError as err:
                self.note(f"VERSION of {plugin['type']}", "SPEC §VERSION", False, str(err))

    async def add_matches_kernel(self) -> Attachment | None:
        att = self.att("a")
        try:
            result = await self.rt.add(att)
        except CniError as err:
            self.note("ADD succeeds", "SPEC §ADD", False, str(err))
            return None
        have = kernel(att)
        claimed = {e["address"] for e in result.get("ips", [])}
        mac = next((i.get("mac") for i in result.get("interfaces", []) if i.get("sandbox")), None)
        lies = sorted(claimed - have.get("addresses", set()))
        ok = bool(claimed) and not lies and (mac is None or mac == have.get("mac"))
        self.note("ADD result matches the netns", "SPEC §Success (ips, interfaces[].sandbox)", ok,
                  f"result {sorted(claimed)}, kernel {sorted(have.get('addresses', set()))}" +
                  (f"; the result's address {', '.join(lies)} is not on {att.ifname}" if lies else "") +
                  (f"; MAC {mac} vs {have.get('mac')}" if mac and mac != have.get("mac") else ""))
        return att

    async def second_add(self, att: Attachment) -> None:
        before = kernel(att).get("addresses", set())
        try:
            again = await self.rt.add(att)
            same = {e["address"] for e in again.get("ips", [])} == before
            self.note("a second ADD is handled", "SPEC §ADD: the same attachment twice", same,
                      "returned the same addresses" if same else f"returned {again.get('ips')}, had {before}")
        except CniError as err:
            self.note("a second ADD is handled", "SPEC §ADD: the same attachment twice", err.well_formed,
                      f"{'a well-formed' if err.well_formed else 'a malformed'} error: {err.msg}")

    async def check_finds_removal(self, att: Attachment) -> None:
        net, _ = load_network(self.rt.conf_dir)
        if net["cniVersion"] not in ("0.4.0", "1.0.0", "1.1.0"):
            self.note("CHECK finds a removed address", "SPEC §CHECK (0.4.0+)", None, "cniVersion predates CHECK")
            return
        try:
            await self.rt.check(att)
            clean = True
        except CniError as err:
            self.note("CHECK passes on a healthy attachment", "SPEC §CHECK", False, str(err))
            return
        victim = sorted(kernel(att).get("addresses", set()))[:1]
        for addr in victim:
            subprocess.run(["ip", "-n", att.netns, "addr", "del", addr, "dev", att.ifname], check=False)
        try:
            await self.rt.check(att)
            self.note("CHECK finds a removed address", "SPEC §CHECK: an error when the container is not as "
                      "ADD left it", False, f"CHECK passed with {victim} removed by hand")
        except CniError as err:
            self.note("CHECK finds a removed address", "SPEC §CHECK", clean, err.msg)

    async def delete_twice(self, att: Attachment) -> None:
        errors = []
        for _ in range(2):
            try:
                await self.rt.delete(att)
            except CniError as err:
                errors.append(str(err))
        gone = not kernel(att)
        self.note("DEL removes what ADD made, and is idempotent", "SPEC §DEL: a second DEL succeeds",
                  not errors and gone, "; ".join(errors) or ("the interface stayed" if not gone else "ok"))

    async def delete_after_failed_add(self) -> None:
        att = Attachment("cnitest-missing", "cnitest", "missing")  # no such netns: ADD must fail
        try:
            await self.rt.add(att)
            self.note("errors are well-formed", "SPEC §Error: code and msg", False, "ADD with no netns succeeded")
        except CniError as err:  # from the plugin itself (not the runtime failing to run it), as JSON
            self.note("errors are well-formed", "SPEC §Error: JSON with code and msg", err.well_formed, err.msg)
        try:
            await self.rt.delete(att)
            self.note("DEL after a failed ADD", "SPEC §DEL: must not fail when resources are missing", True, "ok")
        except CniError as err:
            self.note("DEL after a failed ADD", "SPEC §DEL", False, str(err))

    async def leaks(self, cycles: int) -> None:
        seen = []
        for i in range(cycles):
            att = self.att(f"leak{i}")
            try:
                result = await self.rt.add(att)
                seen.append(addresses(result)[0])
                await self.rt.delete(att)
            except CniError as err:
                self.note("DEL releases IPAM addresses", "SPEC §DEL: release what ADD allocated", False,
                          f"ADD #{i + 1} of {cycles} in a range of {cycles - 2}: {err.msg} (addresses leak on DEL)")
                return
        self.note("DEL releases IPAM addresses", "SPEC §DEL", True, f"{cycles} ADD/DEL cycles in a range of "
                                                                     f"{cycles - 2} addresses")

    async def chained(self, record: str) -> None:
        net, _ = load_network(self.rt.conf_dir)
        chain = {**net, "plugins": [*net["plugins"], {"type": "cnitest-record", "out": record}]}
        path = os.path.join(self.rt.conf_dir, "10-test.conflist")
        with open(path) as f:
            original = f.read()
        with open(path, "w") as f:
            json.dump(chain, f)
        att = self.att("chain")
        try:
            result = await self.rt.add(att)
            with open(record) as f:
                got = json.load(f)
            ok = got.get("prevResult", {}).get("ips") == result.get("ips")
            self.note("prevResult is passed on", "SPEC §Chaining: prevResult", ok,
                      "the next plugin got the result" if ok else f"it got {got.get('prevResult')}")
            await self.rt.delete(att)
        except (CniError, OSError, ValueError) as err:
            self.note("prevResult is passed on", "SPEC §Chaining", False, str(err))
        finally:
            with open(path, "w") as f:
                f.write(original)


RECORDER = """#!/usr/bin/env python3
# a plugin that records what the runtime handed it (for the prevResult check) and passes the result on
import json, os, sys
conf = json.load(sys.stdin)
if os.environ["CNI_COMMAND"] == "VERSION":
    print(json.dumps({"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]}))
    sys.exit(0)
if os.environ["CNI_COMMAND"] == "ADD":
    with open(conf["out"], "w") as f:
        json.dump(conf, f)
    print(json.dumps(conf.get("prevResult") or {}))
"""


async def battery(bin_dir: str, conflist: str, node: str, tiny: str) -> list[dict[str, Any]]:
    rt = runtime(bin_dir, conflist, {"podCIDR": tiny, "podCIDRv6": "", "nodeName": node})
    recorder = os.path.join(WORK, "bin", "cnitest-record")
    os.makedirs(os.path.dirname(recorder), exist_ok=True)
    with open(recorder, "w") as f:
        f.write(RECORDER)
    os.chmod(recorder, 0o755)
    rt.path.append(os.path.dirname(recorder))
    b = Battery(rt)
    try:
        await b.version()
        att = await b.add_matches_kernel()
        if att is not None:
            await b.second_add(att)
            await b.check_finds_removal(att)
            await b.delete_twice(att)
        await b.delete_after_failed_add()
        await b.leaks(ip_network(tiny).num_addresses)
        await b.chained(os.path.join(WORK, "record.json"))
    finally:
        for att in b.made:
            with contextlib.suppress(CniError, OSError):
                await rt.delete(att)
            drop(att.netns)
    return b.out


def setup(tiny: str) -> None:
    """The scratch node: its own netns, a veth to the node, the range routed to it, forwarding on."""
    teardown(tiny)
    nsutil.create_named(f"/run/netns/{NODE_NS}")
    fd = os.open(f"/run/netns/{NODE_NS}", os.O_RDONLY)
    try:
        with IPRoute() as ipr:
            ipr.link("add", ifname=NODE_SIDE, kind="veth", **ONE_QUEUE,
                     peer={"ifname": UPLINK, "net_ns_fd": fd, **ONE_QUEUE})
            index = ipr.link_lookup(ifname=NODE_SIDE)[0]
            ipr.addr("add", index=index, address=LINK[0], prefixlen=30)
            ipr.link("set", index=index, state="up")
            ipr.route("replace", dst=tiny, gateway=LINK[1], oif=index)
    finally:
        os.close(fd)
    with nsutil.entered(f"/run/netns/{NODE_NS}"), IPRoute() as ipr:
        index = ipr.link_lookup(ifname=UPLINK)[0]
        ipr.addr("add", index=index, address=LINK[1], prefixlen=30)
        ipr.link("set", index=index, state="up")
        ipr.link("set", index=1, state="up")
        ipr.route("add", dst="0.0.0.0/0", gateway=LINK[0])
        for name, value in (("net.ipv4.ip_forward", 1), ("net.ipv4.conf.all.rp_filter", 0)):
            nsutil.write_sysctl(name, value)


def teardown(tiny: str) -> None:
    """Everything the battery made: pods' and the scratch node's namespaces, the veth, the route, IPAM files."""
    for name in os.listdir("/run/netns") if os.path.isdir("/run/netns") else []:
        if name.startswith("cnitest-"):
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
            for pid in pids:  # a serve step's server
                subprocess.run(["kill", pid], check=False)
            drop(name)
    with IPRoute() as ipr:
        for index in ipr.link_lookup(ifname=NODE_SIDE):
            with contextlib.suppress(Exception):
                ipr.link("del", index=index)
        with contextlib.suppress(Exception):
            ipr.route("del", dst=tiny)
    subprocess.run(["rm", "-rf", os.path.join(WORK, "cache"), os.path.join(WORK, "ipam"),
                    os.path.join(WORK, "net.d")], check=False)


async def cross(step: str, bin_dir: str, conflist: str, node: str, tiny: str, tag: str, peer: str = "") \
        -> dict[str, Any]:
    """One node's part of the cross-node check: add (and serve), connect, or del."""
    rt = runtime(bin_dir, conflist, {"podCIDR": tiny, "podCIDRv6": "", "nodeName": node})
    name = f"cnitest-x{tag}"
    if step == "del":
        try:
            await rt.delete(Attachment(name, "cnitest", name))
        except CniError as err:
            return {"error": str(err)}
        finally:
            drop(name)
        return {}
    att = sandbox(name)
    try:
        result = await rt.add(att)
    except CniError as err:
        return {"error": str(err)}
    ip = addresses(result)[0]
    if step == "serve":
        server = ("import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
                  "s.bind(('0.0.0.0', 7777)); s.listen(8)\nwhile True:\n c, a = s.accept(); c.sendall(a[0].encode()); "
                  "c.close()")
        subprocess.Popen(["ip", "netns", "exec", name, "python3", "-c", server], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
        return {"ip": ip}
    got = subprocess.run(["ip", "netns", "exec", name, "python3", "-c",
                          "import socket, sys; s = socket.create_connection((sys.argv[1], 7777), timeout=3); "
                          "print(s.recv(100).decode())", peer], capture_output=True, text=True, timeout=10)
    return {"ip": ip, "seen": got.stdout.strip(), "error": got.stderr.strip()[-300:]}


def main() -> None:
    step, *args = sys.argv[1:]
    if step == "battery":
        print(json.dumps(asyncio.run(battery(*args))))
    elif step in ("setup", "teardown"):
        (setup if step == "setup" else teardown)(*args)
        print("{}")
    else:
        print(json.dumps(asyncio.run(cross(step, *args))))


if __name__ == "__main__":
    main()

