"""Pods: each node's agent is handed the full list of its pods and makes the node match (create, keep,
recreate on change, remove), so this action is also how `apply` and `delete` take effect."""

from __future__ import annotations

from ipaddress import ip_network
from typing import Any

from testbed.actions import Context, each
from testbed.agent.processes import process_name
from testbed.checks import HEAL, Finding, Observation, fail, ok
from testbed.network import cni
from testbed.network.bridge import BRIDGE
from testbed.plan.cluster import NodePlan, Plan, PodPlan
from testbed.runtime import agent


def resolv_conf(pod: PodPlan, dns: list[str], zone: str, upstream: str | None) -> str:
    """As the kubelet writes it for the pod's dnsPolicy, merged with its dnsConfig: ClusterFirst (the cluster
    DNS and its search path), Default (what the node uses: the lab's external DNS server), None (dnsConfig
    alone)."""
    policy, config = pod.dns.get("policy", "ClusterFirst"), pod.dns.get("config", {})
    servers: list[str] = []
    searches: list[str] = []
    options: dict[str, str | None] = {}
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        servers = list(dns)
        searches, options = [f"{pod.namespace}.svc.{zone}", f"svc.{zone}", zone], {"ndots": "5"}
        if len(servers) > 1:  # a node cache first: a hung one costs one second before kube-dns answers
            options["timeout"] = "1"
    elif policy == "Default" and upstream:
        servers = [upstream]
    servers = list(dict.fromkeys(servers + config.get("nameservers", [])))[:3]
    searches = list(dict.fromkeys(searches + config.get("searches", [])))[:32]
    options |= {o["name"]: o.get("value") for o in config.get("options", [])}
    lines = [f"search {' '.join(searches)}"] if searches else []
    lines += [f"nameserver {s}" for s in servers]
    if options:
        lines.append("options " + " ".join(k if v is None else f"{k}:{v}" for k, v in options.items()))
    return "\n".join(lines) + "\n"


def node_net(node: NodePlan, mtu: int, wiring: dict[str, Any] | None = None) -> dict[str, Any]:
    net = {"bridge": BRIDGE, "mtu": mtu, "gateway4": node.gateway4, "prefix4": ip_network(node.cidr4).prefixlen}
    if node.cidr6:
        net |= {"gateway6": node.gateway6, "prefix6": ip_network(node.cidr6).prefixlen}
    if wiring:
        net["cni"] = wiring
    return net


def pod_spec(pod: PodPlan, dns: list[str], zone: str = "cluster.local",
             upstream: str | None = None) -> dict[str, Any]:
    spec = {"netns": pod.netns, "namespace": pod.namespace, "name": pod.name, "hostname": pod.hostname,
            "ipv4": pod.ipv4, "ipv6": pod.ipv6, "resolv": resolv_conf(pod, dns, zone, upstream),
            "routed": pod.routed,
            "ports": [{"port": p.port, "protocol": p.protocol, **({"hostPort": p.host_port} if p.host_port else {})}
                      for p in pod.ports]}
    if pod.bandwidth:
        spec["bandwidth"] = pod.bandwidth
    if pod.processes:  # only then, so pods that run nothing keep their spec digest (and are not recreated)
        spec["processes"] = pod.processes
        if pod.restart != "Always":
            spec["restart"] = pod.restart
    if pod.probes:
        spec["probes"] = pod.probes
    if pod.lifecycle:
        spec["lifecycle"] = pod.lifecycle
    return spec


def _serving(pod: PodPlan, seen: dict[str, Any], daemons: dict[str, Any]) -> str | None:
    """Why a present pod does not serve what it should, or None: its processes run (as its restartPolicy
    wants), or its netexec sockets are open."""
    if pod.processes:
        bad = [f"{c} is {d['state']} (last exit {d['lastExit']})" for c in pod.processes
               if (d := daemons.get(process_name(pod.netns, c), {"state": "missing", "lastExit": None}))["state"]
               not in ("running", "completed", "failed")]
        return ", ".join(bad) or None
    if seen["listening"] + len(seen["errors"]) != len(pod.ports):
        return f"{seen['listening']} of its {len(pod.ports)} port(s) open"
    return None


def _wired(pod: PodPlan, node: NodePlan, got: dict[str, Any], bridge: int | None, own: bool = True) -> list[str]:
    """What the kernel lacks of the pod: its addresses, its default route, its veth up (on the bridge, when
    testbed's wiring or the reference plugins made it; a user's plugins choose their own prefixes and links)."""
    have = {(a["address"], a["prefix"] if own else 0) for a in got.get("addresses", []) if a["dev"] == "eth0"}
    prefix4 = 32 if pod.routed else ip_network(node.cidr4).prefixlen
    wanted = [(pod.ipv4, prefix4)] + ([(pod.ipv6, 128 if pod.routed else ip_network(node.cidr6 or "::/64")
                                        .prefixlen)] if pod.ipv6 else [])
    wanted = wanted if own else [(a, 0) for a, _ in wanted]
    out = [f"address {a}/{p} missing on eth0" for a, p in wanted if (a, p) not in have]
    defaults = {r["dst"] for r in got.get("routes", []) if r["dev"] == "eth0"}
    out += [f"no default route ({d})" for d in ["0.0.0.0/0"] + (["::/0"] if pod.ipv6 else []) if d not in defaults]
    veth = got.get("veth")
    if veth is None:
        out.append("its veth on the node is missing")
    elif not veth["up"] or (own and veth["master"] != bridge):
        out.append(f"its veth {veth['name']} is {'down' if not veth['up'] else 'not on ' + BRIDGE}")
    return out


def check_pods(obs: Observation, deep: bool) -> list[Finding]:
    plan: Plan = obs.plan
    nodes = [n.name for n in plan.nodes]
    replies = obs.ask_all("status", nodes)
    # deep: the kernel's view of every pod, one question per node, all at once; through CNI, CHECK too
    inspected = dict(zip(nodes, each(lambda n: obs.call(n, "inspect", pods=True), nodes), strict=True)) \
        if deep else {}
    checked = obs.ask_all("cni_check", nodes) if deep and plan.topology.cni != "builtin" else {}
    failed_check = {netns: why for reply in checked.values() if reply for netns, why in reply["pods"].items()
                    if why and not cni.known_bug(why)}
    out = []
    own = cni.mode(plan.topology) != "custom"
    for node in plan.nodes:
        reply = replies[node.name] or {"pods": []}  # a node that does not answer has, as far as anyone sees, none
        seen = {p["netns"]: p for p in reply["pods"]}
        daemons = {d["name"]: d for d in reply.get("daemons", [])}
        state = inspected.get(node.name) or {}
        bridge = next((x["index"] for x in state.get("links", []) if x["name"] == BRIDGE), None)
        kernel = {p["netns"]: p for p in state.get("pods", [])}
        for pod in plan.pods_on(node.name):
            got = seen.get(pod.netns)
            if not got or not got["present"]:
                out.append(fail("pods", pod.key, f"pod {pod.key}: missing", [f"planned on {node.name}"], HEAL))
            elif why := _serving(pod, got, daemons):
                out.append(fail("pods", pod.key, f"pod {pod.key} on {node.name}: {why}",
                                hint=f"`testbed logs {pod.key}`" if pod.processes else HEAL))
            elif not got.get("wired", True):
                out.append(fail("pods", pod.key, f"pod {pod.key} on {node.name} has no network: "
                                f"{(got['errors'] or ['its CNI plugins failed'])[0]}", got["errors"],
                                "fix the plugin or its conflist, then `testbed up`"))
            elif pod.netns in failed_check:
                out.append(fail("pods", pod.key, f"pod {pod.key} on {node.name}: CNI CHECK failed",
                                [failed_check[pod.netns]], HEAL))
            elif deep and (lacking := _wired(pod, node, kernel.get(pod.netns, {}), bridge, own)):
                out.append(fail("pods", pod.key, f"pod {pod.key} on {node.name}: {lacking[0]}", lacking, HEAL))
            else:
                ips = " ".join(i for i in (pod.ipv4, pod.ipv6) if i)
                out.append(ok("pods", pod.key, f"{pod.key} on {node.name}: {ips}"))
    return out


UNWIRED = "unwired pods"  # ctx.notes: the keys of pods whose plugins failed this sync


def _wiring(ctx: Context, results: list[dict[str, Any]]) -> None:
    """What the plugins gave that the plan did not expect: addresses other than the planned ones (the lab
    adopts them), and pods they could not wire (not ready, with the plugin's message)."""
    by_netns = {p.netns: p for p in ctx.plan.pods}
    for reply in results:
        for netns, (v4, v6) in reply.get("ips", {}).items():
            pod = by_netns.get(netns)
            if pod is not None and (v4, v6) != (pod.ipv4, pod.ipv6):
                ctx.wiring[pod.key] = {"ipv4": v4, "ipv6": v6}
        for netns, why in reply.get("unwired", {}).items():
            pod = by_netns.get(netns)
            if pod is not None:
                ctx.say(f"pod {pod.key} has no network: {why}")
                ctx.notes.setdefault(UNWIRED, set()).add(pod.key)
                if pod.ready:
                    ctx.wiring[pod.key] = {"error": why}


RELEASE_AT = 200  # pods going at once past which every node lets go of them together first


def _release(ctx: Context, nodes: list[NodePlan], wanted: Any, cni: bool) -> list[dict[str, Any]]:
    """Before a sync that removes many pods, every node with pods going unpins them at once (agent:
    PodManager.release), so that the kernel destroys their namespaces in a few batches: deleting 10,000 pods
    node after node spent most of its time in the kernel's walk of the namespaces still alive. CNI pods go
    through their plugins' DEL first, which needs the netns."""
    if cni or ctx.previous is None or not ctx.trusted:
        return []
    kept = {p.netns for p in ctx.plan.pods}
    gone = [p for p in ctx.previous.pods if p.netns not in kept]
    if len(gone) < RELEASE_AT:
        return []
    going = {p.node for p in gone}

    def one(node: NodePlan) -> dict[str, Any]:
        net, specs = wanted(ctx.plan, node)
        return agent.call(ctx.run_dir(node.name), "sync_pods", net=net, pods=specs, release=True)

    return each(one, [n for n in nodes if n.name in going], width=len(going))


class Pods:
    name = "pods"
    title = "Creating pods"

    def check(self, obs: Observation, deep: bool) -> list[Finding]:
        return check_pods(obs, deep)

    def run(self, ctx: Context) -> None:
        dns = ctx.plan.topology.dns_servers()
        zone = ctx.plan.topology.networking.clusterDomain
        upstream = next((h.ip for h in ctx.plan.externals if h.role == "dns"), None)

        wiring = cni.settings(ctx.plan.topology)
        if wiring:
            cni.prepare(ctx)

        def wanted(plan: Plan, node: NodePlan) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            return (node_net(node, plan.pod_mtu, wiring),
                    [pod_spec(p, dns, zone, upstream) for p in plan.pods_on(node.name)])

        def one(node: NodePlan) -> dict[str, Any]:
            net, specs = wanted(ctx.plan, node)
            return agent.call(ctx.run_dir(node.name), "sync_pods", net=net, pods=specs, verify=ctx.verify)

        nodes = ctx.plan.nodes
        before = ctx.previous
        if before is not None and ctx.trusted and not wiring:  # O(changes): a node whose pods are as they were
            known = {n.name: n for n in before.nodes}       # is told nothing (`up` reads every node's kernel)
            nodes = [] if ctx.as_last else \
                [n for n in nodes if n.name not in known or wanted(before, known[n.name]) != wanted(ctx.plan, n)]
        released = _release(ctx, nodes, wanted, bool(wiring))
        results = each(one, nodes)
        ctx.started |= {name for r in released + results for name in r.get("started", [])}
        if wiring:
            _wiring(ctx, results)
        created = sum(r["created"] for r in results)
        removed = sum(r["removed"] for r in results)
        if created or removed:
            ctx.say(f"pods: {created} created, {removed} removed, {len(ctx.plan.pods)} in all")
