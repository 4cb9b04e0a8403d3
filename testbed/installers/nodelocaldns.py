"""NodeLocal DNSCache (`dns: {nodeLocalCache: true}`), the add-on's design: a caching server on every node at the
link-local 169.254.20.10 (an address of the node's loopback), whose traffic skips conntrack (NOTRACK rules in the
raw hooks: no conntrack entries to race or to run out of, the reason the add-on exists). Pods ask it first
(their resolv.conf); it forwards the cluster's zones to kube-dns over TCP, as the add-on does, and every other
name to the lab's upstream server. Pods keep kube-dns as their second nameserver, with a one-second timeout, so
when the cache dies (nothing answers: at once) or hangs (after that second) their lookups still succeed.

The server is BIND 9, already in the image for kube-dns, as a caching forwarder, supervised by the node's agent
in its own group of daemons. One nftables table per node, `inet testbed-nodelocaldns`."""

from __future__ import annotations

import time
from ipaddress import IPv4Network, IPv6Network
from typing import Any

from testbed.actions import Change, Context, each
from testbed.checks import HEAL, Finding, Observation, compared, fail, ok
from testbed.installers import Installer, dns, register, report
from testbed.model.topology import NODE_LOCAL_DNS as ADDRESS
from testbed.model.topology import Topology
from testbed.plan.cluster import Plan

DIR = "/run/testbed/nodelocaldns"
FAMILY, TABLE, GROUP = "inet", "testbed-nodelocaldns", "nodelocaldns"


def reverse_zone(net: IPv4Network | IPv6Network) -> str:
    """The reverse zone that holds a range, rounded out to a whole octet (IPv4) or nibble (IPv6)."""
    if net.version == 4:
        octets = str(net.network_address).split(".")[: net.prefixlen // 8]
        return ".".join(reversed(octets)) + ".in-addr.arpa"
    nibbles = net.network_address.exploded.replace(":", "")[: net.prefixlen // 4]
    return ".".join(reversed(nibbles)) + ".ip6.arpa"


def cluster_zones(plan: Plan) -> list[str]:
    net = plan.topology.networking
    ranges: list[IPv4Network | IPv6Network] = [net.podCIDR, net.serviceCIDR]
    if net.dualStack:
        ranges += [net.podCIDRv6, net.serviceCIDRv6]
    return list(dict.fromkeys([net.clusterDomain, *(reverse_zone(r) for r in ranges)]))


def named_conf(plan: Plan) -> str:
    kube_dns = plan.topology.dns_ip()
    return (
        dns.options(plan, DIR, ADDRESS, "none",
                    "  max-cache-ttl 30;\n  max-ncache-ttl 5;\n"  # the add-on's 30 s and 5 s
                    "  max-cache-size 32m;\n")  # BIND's default is 90 % of the machine's memory, per node
        + "controls { };\n"
        f"server {kube_dns} {{ tcp-only yes; }};\n"  # to kube-dns over TCP, as the add-on's force_tcp
        + "".join(f'zone "{z}" {{ type forward; forward only; forwarders {{ {kube_dns}; }}; }};\n'
                  for z in cluster_zones(plan)))


def render(plan: Plan) -> str:
    """The NOTRACK rules, the same on every node: queries to the cache and its answers, both ways."""
    rules = [f"ip daddr {ADDRESS} udp dport 53 notrack", f"ip daddr {ADDRESS} tcp dport 53 notrack"]
    answers = [f"ip saddr {ADDRESS} udp sport 53 notrack", f"ip saddr {ADDRESS} tcp sport 53 notrack"]
    return "\n".join([f"table {FAMILY} {TABLE} {{",
                      "  chain prerouting {", "    type filter hook prerouting priority raw; policy accept;",
                      *(f"    {r}" for r in rules), "  }",
                      "  chain output {", "    type filter hook output priority raw; policy accept;",
                      *(f"    {r}" for r in rules + answers), "  }", "}"]) + "\n"


def daemon(plan: Plan) -> dict[str, Any]:
    return {"name": "nodelocaldns", "argv": ["named", "-g", "-n", "1", "-c", f"{DIR}/named.conf"],
            "files": {f"{DIR}/named.conf": named_conf(plan)}}


def _address(ctx: Context, node: str, present: bool) -> None:
    """The cache's address on the node's loopback (added before the server starts, so it can bind it)."""
    ctx.netops(node, "address", ifname="lo", address=ADDRESS, prefixlen=32, present=present)


@register
class NodeLocalDNS(Installer):
    name = "nodelocaldns"
    title = "NodeLocal DNSCache"

    def enabled(self, topo: Topology) -> bool:
        return topo.dns.nodeLocalCache

    def _apply(self, ctx: Context, on: bool) -> Change:
        from testbed.runtime import agent

        def one(node: str) -> bool:
            start = time.monotonic()
            if on:
                _address(ctx, node, True)
            answer = agent.call(ctx.run_dir(node), "rules", family=FAMILY, table=TABLE,
                                text=render(ctx.plan) if on else None, verify=ctx.verify)
            done = agent.call(ctx.run_dir(node), "daemons", procs=[daemon(ctx.plan)] if on else [], group=GROUP)
            if not on:
                _address(ctx, node, False)
            return report(ctx, self.name, node, f"table {FAMILY} {TABLE}", answer, start) or bool(
                done["added"] or done["removed"] or done["changed"])

        changed = sum(each(one, [n.name for n in ctx.plan.nodes]))
        return Change(changed=changed) if on else Change(removed=changed)

    def install(self, ctx: Context) -> Change:
        if ctx.unchanged(lambda p: (self.enabled(p.topology), render(p), daemon(p))):
            return Change()  # every node holds these rules and runs this cache: nothing is sent
        return self._apply(ctx, True)

    def uninstall(self, ctx: Context) -> Change:
        if ctx.previous is None or not self.enabled(ctx.previous.topology):
            return Change()  # it was never on: nothing to take away
        return self._apply(ctx, False)

    def check(self, obs: Observation, deep: bool) -> list[Finding]:
        """Each node's cache runs and (deep) answers a cluster name and an outside one; its NOTRACK rules are
        the kernel's."""
        plan = obs.plan
        zone = plan.topology.networking.clusterDomain
        name = f"kubernetes.default.svc.{zone}" if any(s.key == "default/kubernetes" for s in plan.services) \
            else f"{plan.services[0].name}.{plan.services[0].namespace}.svc.{zone}" if plan.services else zone

        def one(node: str) -> list[Finding | None]:
            out: list[Finding | None] = []
            reply = obs.call(node, "status") or {}
            running = any(d["name"] == "nodelocaldns" and d["state"] == "running" for d in reply.get("daemons", []))
            out.append(ok("NodeLocal DNSCache", node, f"BIND caches at {ADDRESS}") if running else
                       fail("NodeLocal DNSCache", node, f"no cache runs at {ADDRESS} (pods fall back to kube-dns)",
                            [], HEAL))
            if deep:
                out.append(compared("NodeLocal DNSCache NOTRACK rules", node, f"table {FAMILY} {TABLE}",
                                    obs.call(node, "compare", kind="nft", family=FAMILY, table=TABLE,
                                             text=render(plan))))
                if running:
                    # asked by the node's agent, not through the engine (a docker exec may lose a short output)
                    got = obs.call(node, "run", cache=False, argv=["dig", f"@{ADDRESS}", "+short", "+time=1",
                                                                   "+tries=1", name], seconds=2) or {}
                    answer = str(got.get("stdout", "")).strip()
                    out.append(ok("NodeLocal DNSCache answers", node, f"{name}: {answer}")
                               if got.get("code") == 0 and answer else
                               fail("NodeLocal DNSCache answers", node, f"no answer for {name} from {ADDRESS}",
                                    [str(got.get("stderr", "")).strip() or "the node's agent did not answer"], HEAL))
            return out

        return [f for found in each(one, [n.name for n in plan.nodes]) for f in found if f is not None]
