"""Pods inside one node: a named netns, a veth to the node bridge, addresses, routes and workload sockets. The
host sends the full desired list; sync() makes the node match it: an unchanged pod is left alone (its sockets
reopened if the agent restarted), a changed one recreated, an unlisted one removed."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import os
import select
import shutil
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from pyroute2.netlink.rtnl import RTMGRP_LINK
from pyroute2.netlink.rtnl.ndmsg import NUD_REACHABLE

from testbed.agent import cniwire, netstate, nlbatch, nlmsg, nsutil, podhealth, workload
from testbed.agent.cni import Runtime, addresses
from testbed.agent.iproute import IPRoute
from testbed.agent.macs import ip_mac

NETNS_DIR = "/run/netns"
ETC_NETNS = "/etc/netns"
IFA_F_NODAD = 0x02
IFF_UP = 1
RTNH_F_ONLINK = 4
PROTO_POD = 204  # host routes to routed pods (matches testbed.netns)
REMOVE_WAIT = 10.0  # seconds the kernel gets to destroy unpinned pod netns before veths are deleted by hand
FIRST_IFINDEX = 2
QUIET = 0.2  # seconds without link events after which the agent checks the link table itself
CNI_PARALLEL = 16  # pods whose plugins run at once


def host_veth(netns: str) -> str:
    """The node-side veth name: 15 bytes at most, stable for a pod (like Calico's cali<hash>)."""
    return "veth" + hashlib.sha1(netns.encode()).hexdigest()[:11]


def _family(ip: str) -> int:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def _check(errors: list[int], pod: str, side: str) -> None:
    """Each request's errno; the first may be a pod's no_link_local, refused by a kernel without IPv6."""
    failed = [os.strerror(e) for i, e in enumerate(errors) if e and not (i == 0 and e == errno.EAFNOSUPPORT)]
    if failed:
        raise OSError(f"pod {pod}, {side}: {'; '.join(failed)}")


def spec_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Pod:
    spec: dict[str, Any]
    digest: str
    servers: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wired: bool = True  # False: its CNI plugins failed (errors says how)
    host_if: str | None = None  # its interface on the node, as the CNI result names it
    result: dict[str, Any] | None = None  # its CNI result
    restarts: int = 0  # its sockets made again by a liveness probe (a netexec pod runs no process to restart)


class PodManager:
    def __init__(self, node: str, state_file: str) -> None:
        self.node = node
        self.state_file = state_file
        self.pods: dict[str, Pod] = {}
        self.node_fd = nsutil.self_fd()
        self.ipr = IPRoute()
        self.nl = nlbatch.open_socket()
        self.cni: Runtime | None = None  # set when the node's pods are wired through CNI plugins
        self._net: dict[str, Any] = {}  # the node's network as the last sync gave it
        nsutil.ensure_run_dir(NETNS_DIR)

    # -- registry: which netns this agent made, with their spec digests, kept across agent restarts
    def _load_registry(self) -> dict[str, str]:
        try:
            with open(self.state_file) as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return {}

    def _save_registry(self) -> None:
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({name: pod.digest for name, pod in self.pods.items()}, f)
        os.replace(tmp, self.state_file)

    host_veth = staticmethod(host_veth)  # for podhealth: a built-in pod's veth on the node

    @staticmethod
    def _digest(net: dict[str, Any], spec: dict[str, Any]) -> str:
        """What identifies a pod's wiring. Through CNI its addresses are the plugins' answer, not the request."""
        if net.get("cni"):
            spec = {k: v for k, v in spec.items() if k not in ("ipv4", "ipv6")}
        return spec_hash({"net": net, "pod": spec})

    def unchanged(self, net: dict[str, Any], desired: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The desired pods that exist as specified (a sync keeps them; the others are rebuilt or new)."""
        known = self._load_registry() | {name: pod.digest for name, pod in self.pods.items()}
        return [p for p in desired if known.get(p["netns"]) == self._digest(net, p) and self._present(p["netns"])]

    async def sync(self, net: dict[str, Any], desired: list[dict[str, Any]], verify: bool = False) \
            -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        known = self._load_registry()
        known.update({name: pod.digest for name, pod in self.pods.items()})
        self.cni, self._net = cniwire.runtime(net, self.cni), net
        want = {p["netns"]: (p, self._digest(net, p)) for p in desired}
        gone = sorted(set(known) - set(want))
        # changed pods, and netns left by an agent that died before recording them, are rebuilt from scratch
        stale = [name for name, (_, digest) in want.items()
                 if (name in known or self._present(name)) and not (known.get(name) == digest and
                                                                   self._present(name))]
        if verify:  # pods this agent did not make (it restarted) are known from the registry and the CNI cache
            for name, (spec, digest) in want.items():
                if name in known and name not in stale and name not in self.pods:
                    self.pods[name] = Pod(spec, digest)
                    self._recall(self.pods[name])
            stale += await podhealth.broken(self, [n for n in want if n in self.pods and n not in stale])
        if self.cni:  # the plugins release what they gave (veths, addresses, rules) while the netns is there
            for name in gone + stale:
                held = self.pods.get(name)
                await cniwire.delete(self.cni, name, held.spec if held else None)
        await self._remove(gone + stale)
        bridge = self.ipr.link_lookup(ifname=net["bridge"])
        if not bridge:
            raise RuntimeError(f"bridge {net['bridge']} is missing on {self.node}")
        created = 0
        fresh: list[Pod] = []
        for name, (spec, digest) in want.items():
            pod = self.pods.get(name)
            if name in known and name not in stale:
                if pod is None or (not pod.servers and pod.wired):  # the agent restarted: sockets are gone
                    self.pods[name] = pod = Pod(spec, digest)
                    self._recall(pod)
                    await self._listen(loop, pod, net)
                else:
                    spec.update(ipv4=pod.spec["ipv4"], ipv6=pod.spec.get("ipv6"))  # as wired, not as asked
                continue
            pod = Pod(spec, digest)
            if self.cni:
                fresh.append(pod)
                continue
            self._create(pod, net, bridge[0])
            await self._listen(loop, pod, net)
            self.pods[name] = pod
            created += 1
        if fresh:  # plugins are processes: pods are added side by side, as a container runtime does
            gate = asyncio.Semaphore(CNI_PARALLEL)

            async def one(pod: Pod) -> None:
                async with gate:
                    self._write_etc(pod.spec)
                    await cniwire.add(self.cni, pod, net)  # type: ignore[arg-type]
                    self._write_etc(pod.spec)  # with the addresses the plugins gave

            await asyncio.gather(*(one(pod) for pod in fresh))
            for pod in fresh:
                await self._listen(loop, pod, net)
                self.pods[pod.spec["netns"]] = pod
            created += len(fresh)
        self._save_registry()
        if self.cni and (fresh or gone or stale):  # plugins that speak 1.1.0 drop what no pod holds any more
            with contextlib.suppress(Exception):
                await self.cni.gc([cniwire.attachment(p.spec) for p in self.pods.values() if p.wired])
        out: dict[str, Any] = {"created": created, "removed": len(gone), "pods": len(self.pods)}
        if self.cni:
            out["ips"] = {n: [p.spec["ipv4"], p.spec.get("ipv6")] for n, p in self.pods.items() if p.wired}
            out["unwired"] = {n: p.errors[0] for n, p in self.pods.items() if not p.wired}
        return out

    async def restart_sockets(self, netns: str, down: float = 0.0) -> None:
        """A netexec pod's "container restart": its sockets closed, and opened again after down seconds."""
        pod = self.pods.get(netns)
        if pod is None or not pod.wired:
            return
        for server in pod.servers:
            server.close()
        pod.servers = []
        await asyncio.sleep(down)
        await self._listen(asyncio.get_running_loop(), pod, self._net)
        pod.restarts += 1

    def _recall(self, pod: Pod) -> None:
        """A CNI pod this agent did not make (it restarted): its addresses from the cached result."""
        if self.cni is None:
            return
        cached = self.cni.cached(cniwire.attachment(pod.spec))
        if cached and cached.get("result"):
            pod.result = cached["result"]
            v4, v6 = addresses(cached["result"])
            pod.spec.update(ipv4=v4 or pod.spec["ipv4"], ipv6=v6)
            pod.host_if = cniwire.host_interface(cached["result"])

    @staticmethod
    def _present(name: str) -> bool:
        return os.path.exists(os.path.join(NETNS_DIR, name))

    def _create(self, pod: Pod, net: dict[str, Any], bridge_idx: int) -> None:
        spec = pod.spec
        path = os.path.join(NETNS_DIR, spec["netns"])
        self._write_etc(spec)
        nsutil.create_named(path)
        mtu, mac = net["mtu"], ip_mac(spec["ipv4"])
        ips = [ip for ip in (spec["ipv4"], spec.get("ipv6")) if ip]
        # node side, one write: the node's end is born enslaved, set as a port, then up; the pod's end born in
        # the pod with its MAC; then the node's neighbour entries, since one left probing for this IP (a client
        # tried it before the pod existed) would fail the next connections until it gives up
        fd = os.open(path, os.O_RDONLY)
        try:
            # the port in hairpin mode, as the CNI bridge plugin's hairpinMode: a pod that reaches its own Service
            # and is sent back to itself leaves the bridge by the port it came in on (br_netfilter DNATs there)
            port = host_veth(spec["netns"])
            batch = [nlmsg.veth(port, mtu, bridge_idx, "eth0", fd, mac), nlmsg.port(port), nlmsg.link_up(name=port)]
            for ip in ips:
                batch.append(nlmsg.neigh(bridge_idx, ip, mac, NUD_REACHABLE))
                if spec.get("routed"):  # a pod from another node's range: reached by a host route (bgp mode)
                    batch.append(nlmsg.route(f"{ip}/{128 if ':' in ip else 32}", None, bridge_idx, proto=PROTO_POD))
            _check(nlbatch.send(self.nl, b"".join(batch)), spec["netns"], "node side")
        finally:
            os.close(fd)
        # pod side, one write on a socket opened in the pod
        with nsutil.entered(path):
            if spec.get("ipv6"):  # a new netns has IPv6 on, unless the kernel was booted with it off
                nsutil.ipv6_on(quiet="eth0")
            sock = nlbatch.open_socket()
        with sock:
            # in a fresh netns lo is 1 and the first device made there is 2; look it up if that ever differs
            errors = nlbatch.send(sock, self._pod_side(spec, net, FIRST_IFINDEX))
            if errno.ENODEV in errors:
                with nsutil.entered(path), IPRoute() as ipr:
                    index = ipr.link_lookup(ifname="eth0")[0]
                errors = nlbatch.send(sock, self._pod_side(spec, net, index))
            _check(errors, spec["netns"], "pod side")

    def _pod_side(self, spec: dict[str, Any], net: dict[str, Any], eth0: int) -> bytes:
        """A routed pod (its IP is from another node's range) gets a /32 (/128) and its default route onlink
        through this node's bridge address, as Calico wires pods; the others get the bridge's subnet."""
        routed = bool(spec.get("routed"))
        # a single-stack pod's eth0 gets no link-local address (first: its EAFNOSUPPORT, on a kernel without
        # IPv6, is no failure), nor its DAD and multicast reports; not by the disable_ipv6 sysctl, whose write
        # spins for the RTNL lock while 200 agents wire pods (a third of the CPU there)
        batch = [] if spec.get("ipv6") else [nlmsg.no_link_local(eth0)]
        batch += [nlmsg.link_up(1), nlmsg.addr(eth0, spec["ipv4"], 32 if routed else net["prefix4"])]
        if spec.get("ipv6"):
            batch.append(nlmsg.addr(eth0, spec["ipv6"], 128 if routed else net["prefix6"], IFA_F_NODAD))
        batch.append(nlmsg.link_up(eth0))
        oif, flags = (eth0, RTNH_F_ONLINK) if routed else (None, 0)
        batch.append(nlmsg.route("0.0.0.0/0", net["gateway4"], oif, flags, how=nlmsg.ADD))
        if spec.get("ipv6"):
            batch.append(nlmsg.route("::/0", net["gateway6"], oif, flags, how=nlmsg.ADD))
        return b"".join(batch)

    async def _listen(self, loop: asyncio.AbstractEventLoop, pod: Pod, net: dict[str, Any]) -> None:
        spec = pod.spec
        ident = workload.Identity(spec["name"], spec["namespace"], self.node,
                                  tuple(ip for ip in (spec["ipv4"], spec.get("ipv6")) if ip), spec["hostname"])
        if spec.get("processes") or not pod.wired:
            return  # the pod runs its own processes (they serve its ports), or it has no network
        dual = bool(spec.get("ipv6"))
        socks = []
        with nsutil.entered(os.path.join(NETNS_DIR, spec["netns"])):
            for port in spec["ports"]:
                try:
                    socks.append((workload.open_socket(port["protocol"], port["port"], dual), port["port"]))
                except OSError as err:  # SCTP has no sockets on some kernels: report it, keep the pod
                    pod.errors.append(f"{port['protocol']}/{port['port']}: {err.strerror}")
        for sock, number in socks:
            pod.servers.append(await workload.serve(loop, sock, ident, number))

    def _write_etc(self, spec: dict[str, Any]) -> None:
        """Files `ip netns exec` binds over /etc, so commands in the pod see the pod's names and resolver."""
        etc = os.path.join(ETC_NETNS, spec["netns"])
        os.makedirs(etc, exist_ok=True)
        hosts = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        hosts += [f"{ip}\t{spec['hostname']}" for ip in (spec["ipv4"], spec.get("ipv6")) if ip]
        with open(os.path.join(etc, "hosts"), "w") as f:
            f.write("\n".join(hosts) + "\n")
        with open(os.path.join(etc, "resolv.conf"), "w") as f:
            f.write(spec["resolv"])

    async def release(self, keep: list[str]) -> int:
        """The pods not in keep let go at once, unwaited (the next sync waits): all nodes together before a big
        delete, so the kernel destroys the netns in few batches (each walks every netns that outlives it)."""
        kept = set(keep)
        going = [name for name in self._load_registry() | dict.fromkeys(self.pods) if name not in kept]
        await self._let_go([pod for name in going if (pod := self.pods.get(name))])
        for name in going:
            nsutil.remove_named(os.path.join(NETNS_DIR, name))
        return len(going)

    @staticmethod
    async def _let_go(leaving: list[Pod]) -> None:
        for pod in leaving:
            for server in pod.servers:
                server.close()  # sockets hold the netns alive, so they go first, with their connections
            pod.servers = []
        # a dropped connection's socket is closed by a callback the loop runs next, in order: ours comes after it
        turn = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(turn.set_result, None)
        await turn

    async def _remove(self, names: list[str]) -> None:
        """Unpin the pods' netns together: the kernel then destroys them, veths included, in one batch, far
        faster than deleting veths one by one (each deletion waits for an RCU grace period)."""
        if not names:
            return
        leaving = [pod for name in names if (pod := self.pods.pop(name, None))]
        await self._let_go(leaving)
        with IPRoute() as monitor:
            monitor.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            monitor.bind(groups=RTMGRP_LINK)  # before unpinning, so no deletion event is missed
            self._forget_neighbours(leaving)
            for name in names:
                nsutil.remove_named(os.path.join(NETNS_DIR, name))
                shutil.rmtree(os.path.join(ETC_NETNS, name), ignore_errors=True)
            pending = {host_veth(n) for n in names}
            pending &= {link.get_attr("IFLA_IFNAME") for link in self.ipr.get_links()}
            deadline = time.monotonic() + REMOVE_WAIT
            while pending and (left := deadline - time.monotonic()) > 0:
                events = []
                if select.select([monitor], [], [], min(QUIET, left))[0]:
                    try:
                        events = monitor.get()
                    except OSError as err:  # the kernel dropped events: look at the links below
                        if err.errno != errno.ENOBUFS:
                            raise
                pending -= {m.get_attr("IFLA_IFNAME") for m in events if m["event"] == "RTM_DELLINK"}
                if not events:  # after a quiet spell or an overflow, look rather than listen
                    pending &= {link.get_attr("IFLA_IFNAME") for link in self.ipr.get_links()}
        for veth in pending:  # something else holds that netns (a command still running in the pod)
            with contextlib.suppress(Exception):
                self.ipr.link("del", ifname=veth)

    def _forget_neighbours(self, pods: list[Pod]) -> None:
        """The node's own neighbour entries for departing pods' IPs, so a successor's MAC is learnt afresh, and
        the host routes of departing routed pods."""
        ips = {ip for pod in pods for ip in (pod.spec["ipv4"], pod.spec.get("ipv6")) if ip}
        if not ips:
            return
        for pod in pods:
            for ip in (pod.spec["ipv4"], pod.spec.get("ipv6")) if pod.spec.get("routed") else ():
                if ip:
                    with contextlib.suppress(Exception):
                        self.ipr.route("del", dst=ip, dst_len=128 if ":" in ip else 32, family=_family(ip),
                                       proto=PROTO_POD)
        for family in (socket.AF_INET, socket.AF_INET6):
            for entry in self.ipr.get_neighbours(family=family):
                dst = entry.get_attr("NDA_DST")
                if dst in ips:
                    with contextlib.suppress(Exception):
                        self.ipr.neigh("del", ifindex=entry["ifindex"], dst=dst, family=family)

    def links(self) -> list[dict[str, Any]]:
        """The node's own links as they are (pods' veths left out: their pods report them)."""
        out = []
        for link in self.ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            if name.startswith("veth") or name == "lo":
                continue
            info = link.get_attr("IFLA_LINKINFO")
            out.append({"name": name, "kind": info.get_attr("IFLA_INFO_KIND") if info else None,
                        "up": bool(link["flags"] & IFF_UP)})
        return out

    def routes(self) -> list[dict[str, Any]]:
        return netstate.routes(self.ipr)

    def inspect(self) -> list[dict[str, Any]]:
        """Each pod as the kernel has it (for checks): addresses and routes inside it, its veth on the node."""
        out = []
        for name in sorted(self.pods):
            entry: dict[str, Any] = {"netns": name, "present": self._present(name)}
            if entry["present"]:
                try:
                    pod = self.pods[name]
                    entry |= netstate.pod(os.path.join(NETNS_DIR, name), pod.host_if or host_veth(name), self.ipr)
                except OSError as err:
                    entry["error"] = str(err)
            out.append(entry)
        return out

    def status(self) -> list[dict[str, Any]]:
        out = []
        for name, pod in sorted(self.pods.items()):
            out.append({"netns": name, "namespace": pod.spec["namespace"], "name": pod.spec["name"],
                        "listening": len(pod.servers), "errors": pod.errors, "wired": pod.wired,
                        "restarts": pod.restarts,
                        "present": self._present(name)})
        return out
