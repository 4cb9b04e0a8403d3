"""testbed's own pod wiring as a CNI plugin (`type: testbed`, /opt/cni/bin/testbed in every node), so it can be
chained and put through the same conformance battery as any plugin: a veth from the pod's netns to a bridge,
addresses from its own IPAM (a file an address under /var/lib/cni/testbed/<network>, as host-local keeps them;
the `ips` capability asks for given ones), a default route through the gateway (put on the bridge unless
`isGateway` is false), MACs from the IPv4
address as the in-process wiring makes them. Speaks CNI 0.3.0 to 1.1.0: ADD, DEL, CHECK, VERSION, GC, STATUS.

    {"cniVersion": "1.0.0", "name": "pods", "plugins": [{"type": "testbed", "bridge": "cni0",
     "ipam": {"subnet": "10.244.0.0/24", "gateway": "10.244.0.1", "rangeStart": 100}}]}
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sys
from ipaddress import ip_address, ip_interface, ip_network
from typing import Any

VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
DATA = "/var/lib/cni/testbed"


class Failure(Exception):
    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details


def _out(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data))


def host_veth(container: str, ifname: str) -> str:
    return "tb" + hashlib.sha1(f"{container}/{ifname}".encode()).hexdigest()[:13]


def mac_of(ip: str) -> str:
    return "0a:58:" + ":".join(f"{b:02x}" for b in ip_address(ip).packed)


class Ipam:
    """One file an address, named by the address and holding `container/ifname`; a lock for the folder."""

    def __init__(self, network: str, conf: dict[str, Any]) -> None:
        self.dir = os.path.join(conf.get("dataDir", DATA), network)
        self.subnets = [ip_network(s, strict=False) for s in (conf.get("subnet"), conf.get("subnet6")) if s]
        if not self.subnets:
            raise Failure(7, "ipam.subnet is required")
        self.gateways = {n.version: ip_address(conf[k]) if conf.get(k) else n[1]
                         for n, k in zip(self.subnets, ("gateway", "gateway6"), strict=False)}
        start = conf.get("rangeStart")  # an address, or an offset into the (first) subnet
        self.start = self.subnets[0][start] if isinstance(start, int) else ip_address(start) if start else None
        os.makedirs(self.dir, exist_ok=True)

    def held(self) -> dict[str, str]:
        out = {}
        for name in os.listdir(self.dir):
            if name != "lock":
                with open(os.path.join(self.dir, name)) as f:
                    out[name] = f.read().strip()
        return out

    def allocate(self, owner: str, wanted: list[str]) -> list[str]:
        import fcntl

        with open(os.path.join(self.dir, "lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            held = self.held()
            mine = [ip for ip, who in held.items() if who == owner]
            if mine:  # a second ADD of the same attachment: the same addresses
                return sorted(mine, key=lambda a: ip_address(a).version)
            out = []
            for net in self.subnets:
                asked = [ip_interface(w).ip for w in wanted if ip_interface(w).version == net.version]
                if asked:
                    ip = asked[0]
                    if ip not in net or str(ip) in held:
                        raise Failure(18, f"requested address {ip} is not free in {net}")
                else:
                    ip = next((a for a in net.hosts() if a != self.gateways[net.version] and str(a) not in held
                               and (self.start is None or a.version != self.start.version or a >= self.start)),
                              None)
                    if ip is None:
                        raise Failure(18, f"no address left in {net}")
                with open(os.path.join(self.dir, str(ip)), "w") as f:
                    f.write(owner)
                out.append(str(ip))
            return out

    def release(self, owner: str | None = None, keep: set[str] | None = None) -> int:
        gone = 0
        for ip, who in self.held().items():
            if (owner is not None and who == owner) or (keep is not None and who not in keep):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.dir, ip))
                gone += 1
        return gone


def _netns_fd(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY)
    except OSError as err:
        raise Failure(4, f"cannot open the netns {path!r}: {err.strerror}") from None


def add(conf: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    from testbed.agent import nlbatch, nlmsg, nsutil
    from testbed.agent.iproute import IPRoute
    from testbed.agent.nlmsg import ONE_QUEUE

    container, ifname, netns = env["CNI_CONTAINERID"], env["CNI_IFNAME"], env.get("CNI_NETNS", "")
    ipam = Ipam(conf["name"], conf.get("ipam") or {})
    fd = _netns_fd(netns)
    owner = f"{container}/{ifname}"
    try:
        ips = ipam.allocate(owner, (conf.get("runtimeConfig") or {}).get("ips") or [])
        mac, veth, mtu = mac_of(ips[0]), host_veth(container, ifname), int(conf.get("mtu", 1500))
        with IPRoute() as ipr:
            name = conf.get("bridge", "cni0")
            if not ipr.link_lookup(ifname=name):  # made on first use, as the bridge plugin makes it
                ipr.link("add", ifname=name, kind="bridge", mtu=int(conf.get("mtu", 1500)))
                ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")
            bridge = ipr.link_lookup(ifname=name)
            if not ipr.link_lookup(ifname=veth):
                ipr.link("add", ifname=veth, kind="veth", mtu=mtu, **ONE_QUEUE,
                         peer={"ifname": ifname, "net_ns_fd": fd, "mtu": mtu, "address": mac, **ONE_QUEUE})
            index = ipr.link_lookup(ifname=veth)[0]
            ipr.link("set", index=index, master=bridge[0])
            if conf.get("isGateway", True):  # the pods' gateway lives on the bridge, as the bridge plugin's
                for net in ipam.subnets:
                    gateway = str(ipam.gateways[net.version])
                    if not any(a.get_attr("IFA_ADDRESS") == gateway for a in ipr.get_addr(index=bridge[0])):
                        ipr.addr("add", index=bridge[0], address=gateway, prefixlen=net.prefixlen)
            with nlbatch.open_socket() as sock:  # a port as the built-in wiring makes it (nlmsg.port), then up
                failed = next((e for e in nlbatch.send(sock, nlmsg.port(veth) + nlmsg.link_up(name=veth)) if e), 0)
            if failed:
                raise OSError(failed, f"bridge port {veth}: {os.strerror(failed)}")
            host_mac = ipr.get_links(index)[0].get_attr("IFLA_ADDRESS")
        with nsutil.entered(netns), IPRoute() as ipr:
            inside = ipr.link_lookup(ifname=ifname)[0]
            for ip, net in zip(ips, ipam.subnets, strict=False):
                with contextlib.suppress(Exception):  # present already: a second ADD
                    ipr.addr("add", index=inside, address=ip, prefixlen=net.prefixlen)
            ipr.link("set", index=inside, state="up")
            for net in ipam.subnets:
                family = socket.AF_INET6 if net.version == 6 else socket.AF_INET
                with contextlib.suppress(Exception):
                    ipr.route("add", dst="::/0" if net.version == 6 else "0.0.0.0/0",
                              gateway=str(ipam.gateways[net.version]), family=family)
    except Failure:
        ipam.release(owner)
        raise
    except Exception as err:
        ipam.release(owner)
        raise Failure(999, f"ADD failed: {err}") from None
    finally:
        os.close(fd)
    return {"cniVersion": conf["cniVersion"],
            "interfaces": [{"name": conf.get("bridge", "cni0")}, {"name": veth, "mac": host_mac},
                           {"name": ifname, "mac": mac, "sandbox": netns}],
            "ips": [{"address": f"{ip}/{net.prefixlen}", "gateway": str(ipam.gateways[net.version]),
                     "interface": 2} for ip, net in zip(ips, ipam.subnets, strict=False)],
            "routes": [{"dst": "::/0" if n.version == 6 else "0.0.0.0/0"} for n in ipam.subnets], "dns": {}}


def delete(conf: dict[str, Any], env: dict[str, str]) -> None:
    from testbed.agent.iproute import IPRoute

    container, ifname = env["CNI_CONTAINERID"], env["CNI_IFNAME"]
    with IPRoute() as ipr:  # deleting the node's end takes the pod's end with it
        for index in ipr.link_lookup(ifname=host_veth(container, ifname)):
            with contextlib.suppress(Exception):
                ipr.link("del", index=index)
    Ipam(conf["name"], conf.get("ipam") or {}).release(f"{container}/{ifname}")


def check(conf: dict[str, Any], env: dict[str, str]) -> None:
    from testbed.agent import nsutil
    from testbed.agent.iproute import IPRoute

    previous = conf.get("prevResult") or {}
    wanted = {e["address"] for e in previous.get("ips", [])}
    if not wanted:
        raise Failure(7, "CHECK needs prevResult with ips")
    _netns_fd(env.get("CNI_NETNS", ""))
    with nsutil.entered(env["CNI_NETNS"]), IPRoute() as ipr:
        found = ipr.link_lookup(ifname=env["CNI_IFNAME"])
        if not found:
            raise Failure(11, f"interface {env['CNI_IFNAME']} is missing in the netns")
        have = {f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=found[0])}
    missing = sorted(wanted - have)
    if missing:
        raise Failure(11, f"address {', '.join(missing)} is missing on {env['CNI_IFNAME']}")


def main() -> None:
    env = dict(os.environ)
    command = env.get("CNI_COMMAND", "")
    try:
        conf = json.loads(sys.stdin.read() or "{}")
        version = conf.get("cniVersion", "1.0.0")
        if command == "VERSION":
            _out({"cniVersion": version, "supportedVersions": VERSIONS})
        elif version not in VERSIONS:
            raise Failure(1, f"incompatible CNI version {version}", f"supported: {', '.join(VERSIONS)}")
        elif command == "ADD":
            _out(add(conf, env))
        elif command == "DEL":
            delete(conf, env)
        elif command == "CHECK":
            check(conf, env)
        elif command == "GC":
            keep = {f"{a['containerID']}/{a['ifname']}" for a in conf.get("cni.dev/valid-attachments", [])}
            Ipam(conf["name"], conf.get("ipam") or {}).release(keep=keep)
        elif command == "STATUS":
            from testbed.agent.iproute import IPRoute

            with IPRoute() as ipr:
                if not ipr.link_lookup(ifname=conf.get("bridge", "cni0")):
                    raise Failure(50, f"bridge {conf.get('bridge', 'cni0')} does not exist yet")
        else:
            raise Failure(4, f"unknown CNI_COMMAND {command!r}")
    except Failure as err:
        _out({"cniVersion": "1.0.0", "code": err.code, "msg": err.msg, "details": err.details})
        sys.exit(1)
    except (KeyError, ValueError) as err:
        _out({"cniVersion": "1.0.0", "code": 4, "msg": f"invalid input: {err}"})
        sys.exit(1)


WRAPPER = "#!/bin/sh\nPYTHONPATH=/opt/testbed:/opt/testbed/lib exec python3 -m testbed.agent.cniplugin \"$@\"\n"


def install(path: str = "/opt/cni/bin/testbed") -> None:
    """The plugin's executable in the node (the agent puts it there as it starts)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o755)
    with os.fdopen(fd, "w") as f:
        f.write(WRAPPER)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    from testbed.agent.light import bare_pyroute2

    bare_pyroute2()  # a plugin runs once a pod: its start-up is the pod's
    main()
