"""Cluster DNS: BIND 9 in kube-system pods (Deployment `kube-dns`, 2 replicas on different nodes when there are
2+ nodes) behind the `kube-dns` Service at the 10th address of each service range, through kube-proxy.

BIND, not Knot: it is authoritative for the cluster zone and the reverse zones and, for every other name,
forwards to the lab's external DNS server, in one daemon (Knot is authoritative only). Records are rendered from
the plan (testbed/plan/dns.py) into zone files, one folder per server pod. Its zones are dynamic: a later sync
sends a running server the records that changed as RFC 2136 updates (nsupdate, signed with the lab's TSIG key),
so a Service or pod change is answered within the sync, with no reload; a sync that changes no record sends
nothing. The rendered file (`<zone>.zone`) is kept current beside BIND's own copy (`<zone>.dyn` and its
journal): a server that starts takes the rendering when it is newer, and a sync that cannot trust what a
server holds (`up`), or changes most of a zone, replaces the zone whole (freeze, copy, thaw).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenacity import Retrying, retry_if_result, stop_after_delay, wait_exponential

from testbed.actions import Change, Context, each
from testbed.agent.processes import process_name
from testbed.checks import HEAL, Finding, Observation, fail, ok
from testbed.errors import TestbedError
from testbed.installers import Installer, register
from testbed.model.topology import Topology
from testbed.plan import dns
from testbed.plan.cluster import Plan, PodPlan
from testbed.policy.evaluate import decide
from testbed.runtime import agent, podexec

DIR = "/run/testbed/dns"  # the node's run folder, which the node's pods see
NAMESPACE, NAME, LABEL = "kube-system", "kube-dns", {"k8s-app": "kube-dns"}
KEY = "dGVzdGJlZC1jbHVzdGVyLWRucy1rZXktZml4ZWQtMzJi"  # rndc's key; the control channel is the pod's loopback


def options(plan: Plan, folder: str, listen: str = "any", listen6: str = "any", extra: str = "") -> str:
    """BIND's options as testbed runs it: recursive for anyone, every name it does not hold forwarded to the
    lab's external DNS server, no DNSSEC validation, no files of its own beyond folder."""
    upstream = next((h.ip for h in plan.externals if h.role == "dns"), None)
    forward = f"  forwarders {{ {upstream}; }};\n  forward only;\n" if upstream else ""
    return (
        "options {\n"
        f'  directory "{folder}";\n  listen-on {{ {listen}; }};\n  listen-on-v6 {{ {listen6}; }};\n'
        "  recursion yes;\n  allow-query { any; };\n  allow-recursion { any; };\n"
        f"{forward}  dnssec-validation no;\n  pid-file none;\n  session-keyfile none;\n  minimal-responses yes;\n"
        f"{extra}}};\n")


def named_conf(plan: Plan, folder: str, zones: list[str]) -> str:
    return (
        options(plan, folder)
        + f'key "testbed" {{ algorithm hmac-sha256; secret "{KEY}"; }};\n'
        'controls { inet 127.0.0.1 port 953 allow { 127.0.0.1; } keys { "testbed"; }; };\n'
        + "".join(f'zone "{z}" {{ type primary; file "{z}.dyn"; allow-update {{ key "testbed"; }}; }};\n'
                  for z in zones))


RNDC_CONF = f'key "testbed" {{ algorithm hmac-sha256; secret "{KEY}"; }};\n' \
            'options { default-key "testbed"; default-server 127.0.0.1; };\n'
RNDC = f"rndc -c {DIR}/rndc.conf"
# a server's start: BIND's copy of each zone is the rendering when that is newer (a sync wrote it while the
# server was down), or when BIND's file and journal no longer load together (a server killed between the two
# writes leaves "journal out of sync with zone", and BIND then serves no such zone at all); otherwise BIND's own
# file and journal, which hold every update it took
START = (f'd={DIR}/$(hostname); cd "$d" || exit 1; for z in *.zone; do y="${{z%.zone}}.dyn"; '
         'if [ ! -e "$y" ] || [ "$z" -nt "$y" ] || '
         '! named-checkzone -q -j -J "$y.jnl" "${z%.zone}" "$y" >/dev/null 2>&1; '
         'then cp "$z" "$y" && rm -f "$y.jnl"; fi; done; '
         'exec named -g -c "$d/named.conf"')
PROBE = 10  # seconds a probe run by a node's agent may take (dig's three tries of a second, on a busy machine)
Asker = Callable[[list[str]], str]  # a command run on a node: its output
UPDATE_CHUNK = 500  # records a message: one update message must stay under DNS's 64 KiB


def folder(pod: PodPlan) -> str:
    """A server's own files: BIND writes its zones and journals there, so two servers on a node never share."""
    return f"{DIR}/{pod.hostname}"


def zones(plan: Plan) -> dict[str, list[str]]:
    """Each zone's records, the cluster zone first (pure)."""
    zone = plan.topology.networking.clusterDomain
    rows, reverse = dns.records(plan, zone)
    return {zone: rows, **reverse}


def files(plan: Plan, records: dict[str, list[str]] | None = None) -> dict[str, str]:
    """rndc.conf, and each server's named.conf and zone files, as the nodes get them (pure)."""
    records = zones(plan) if records is None else records
    cluster, ns_ip = plan.topology.networking.clusterDomain, plan.topology.dns_ip()
    # the serial follows the content, so an unchanged zone renders the same
    texts = {z: dns.zone_file(z, cluster, ns_ip, rows, _serial(rows)) for z, rows in records.items()}
    out = {f"{DIR}/rndc.conf": RNDC_CONF}
    for pod in _servers(plan):
        out[f"{folder(pod)}/named.conf"] = named_conf(plan, folder(pod), list(records))
        out |= {f"{folder(pod)}/{z}.zone": text for z, text in texts.items()}
    return out


def updates(before: dict[str, list[str]], after: dict[str, list[str]]) -> tuple[str, list[str]]:
    """(the nsupdate script that takes a server from before's records to after's, the zones too changed to
    update record by record: they are replaced whole). Pure."""
    lines, whole = [f"server 127.0.0.1\nkey hmac-sha256:testbed {KEY}"], []
    for zone, rows in after.items():
        old = set(before.get(zone, []))
        new = set(rows)
        gone, came = sorted(old - new), sorted(new - old)
        if not gone and not came:
            continue
        if zone not in before or len(gone) + len(came) > max(UPDATE_CHUNK, len(rows) // 2):
            whole.append(zone)
            continue
        ops = [f"update delete {_fqdn(r, zone)}" for r in gone] + \
              [f"update add {_fqdn(r, zone, dns.TTL)}" for r in came]
        for i in range(0, len(ops), UPDATE_CHUNK):
            lines += [f"zone {zone}.", *ops[i:i + UPDATE_CHUNK], "send"]
    return ("\n".join(lines) + "\n" if len(lines) > 1 else ""), whole


def _fqdn(row: str, zone: str, ttl: int | None = None) -> str:
    name, rest = row.split(" ", 1)
    return f"{name}.{zone}. {'' if ttl is None else f'{ttl} '}{rest}"


def replace(zones: list[str], config: bool) -> str:
    """The shell that has a running server take the rendered files: its configuration (new zones start from
    the rendering), then each zone frozen, replaced and thawed (thaw reloads it; the journal goes with it)."""
    out = []
    if config:
        out += ['for z in *.zone; do [ -e "${z%.zone}.dyn" ] || cp "$z" "${z%.zone}.dyn"; done', f"{RNDC} reconfig"]
    out += [f'{RNDC} freeze {z} && cp {z}.zone {z}.dyn && rm -f {z}.dyn.jnl && {RNDC} thaw {z}' for z in zones]
    return " && ".join(out)


def _serial(rows: list[str]) -> int:
    return zlib.crc32("\n".join(rows).encode()) % (1 << 31) or 1


@register
class ClusterDNS(Installer):
    name = "dns"
    title = "Cluster DNS (BIND)"

    def manifests(self, topo: Topology, objects: list[Any]) -> list[dict[str, Any]]:
        net = topo.networking
        ips = [topo.dns_ip()] + ([str(net.serviceCIDRv6[10])] if net.dualStack else [])
        ports = [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                 {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"}]
        return [
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": NAME, "namespace": NAMESPACE},
             "spec": {"replicas": min(2, len(topo.nodes)), "selector": {"matchLabels": LABEL},
                      "template": {"metadata": {"labels": LABEL}, "spec": {"dnsPolicy": "Default", "containers": [
                          {"name": "bind", "command": ["sh", "-c", START], "ports": ports,
                           # a server that stops answering leaves the Service within a second or two, as
                           # CoreDNS's /ready would take it out: the probe asks it a question
                           "readinessProbe": {"exec": {"command": [
                               "dig", "+time=1", "+tries=1", "+short", "@127.0.0.1",
                               f"dns-version.{net.clusterDomain}", "TXT"]},
                               "periodSeconds": 1, "timeoutSeconds": 2, "failureThreshold": 1}}]}}}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": NAME, "namespace": NAMESPACE,
                                                                 "labels": LABEL},
             "spec": {"selector": LABEL, "clusterIP": ips[0], "clusterIPs": ips,
                      "ipFamilyPolicy": "PreferDualStack" if len(ips) > 1 else "SingleStack",
                      "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]}}]

    @staticmethod
    def _write(ctx: Context) -> Written:
        """The configuration and zones on every node that runs a DNS pod: only the files that changed since the
        last sync, to a node that holds it; {node: the files written (["*"]: all, as they were unknown)}."""
        after = zones(ctx.plan)
        before = zones(ctx.previous) if ctx.trusted and ctx.previous is not None else None
        wanted = files(ctx.plan, after)
        old = files(ctx.previous, before) if before is not None and ctx.previous is not None else {}
        held = {p.node for p in _servers(ctx.previous)} if old and ctx.previous is not None else set()
        delta = {path: text for path, text in wanted.items() if old.get(path) != text}

        def one(node: str) -> list[str]:
            mine = (f"{DIR}/rndc.conf", *(folder(p) + "/" for p in _servers(ctx.plan) if p.node == node))
            send = {path: text for path, text in (delta if node in held else wanted).items()
                    if path.startswith(mine)}  # its own servers' files
            if not send or not agent.call(ctx.run_dir(node), "files", files=send)["changed"]:
                return []
            return sorted(send) if node in held else ["*"]

        nodes = sorted({p.node for p in _servers(ctx.plan)})
        return Written({node: changed for node, changed in zip(nodes, each(one, nodes), strict=True) if changed},
                       before, after)

    def prepare(self, ctx: Context) -> Change:
        """BIND exits at once without its configuration: it is written before the pods start."""
        written = self._write(ctx)
        ctx.notes[self.name] = written  # news to the servers already running: install has them reload it
        return Change(changed=len(written.nodes))

    def install(self, ctx: Context) -> Change:
        # what prepare wrote in this sync is news to the servers already running; a sync without prepare (the
        # control plane's, on a readiness change) writes here
        written: Written = ctx.notes.pop(self.name) if self.name in ctx.notes else self._write(ctx)
        healed = _heal(ctx) if ctx.verify else 0
        if not written.nodes:
            return Change(changed=healed)
        # what a running server that held the last sync gets: the changed records, as updates
        script, whole = updates(written.before, written.after) if written.before is not None else ("", [])
        running = {p.key for p in _servers(ctx.previous)} if written.before is not None and ctx.previous else set()

        def sync(pod: PodPlan) -> None:
            paths = [p for p in written.nodes.get(pod.node, []) if p == "*" or p.startswith(folder(pod) + "/")]
            if not paths or process_name(pod.netns, next(iter(pod.processes))) in ctx.started:
                return  # a server this sync started loaded these files; its readiness probe says when it answers
            changed = [p.removeprefix(folder(pod) + "/").removesuffix(".zone") for p in paths if p.endswith(".zone")]
            config = "*" in paths or f"{folder(pod)}/named.conf" in paths
            if "*" in paths:
                changed = list(written.after)
            if pod.key in running and not config:
                took = not script or _update(ctx, pod, script)
                changed = [z for z in changed if z in whole or not took]  # what it could not take goes whole
                if not changed:
                    return  # it answered the updates
            if config or changed:
                shell = f"cd {folder(pod)} && {replace(changed, config)}"
                agent.call(ctx.run_dir(pod.node), "run", argv=["sh", "-c", shell], netns=pod.netns, seconds=30)
            _answering(_asker(ctx.run_dir(pod.node)), pod, ctx.plan.topology.networking.clusterDomain)

        each(sync, _servers(ctx.plan))
        return Change(changed=len(written.nodes))

    def uninstall(self, ctx: Context) -> Change:
        return Change()  # its pods and Service go with its manifests

    def check(self, obs: Observation, deep: bool) -> list[Finding]:
        """Deep: each server answers on its own address (asked from its node), and the cluster DNS answers a
        known name through its ClusterIP from a pod on every node."""
        if not deep:
            return []
        plan, zone, ip = obs.plan, obs.plan.topology.networking.clusterDomain, obs.plan.topology.dns_ip()
        name = f"{NAME}.{NAMESPACE}.svc.{zone}"

        def server(pod: PodPlan) -> Finding | None:
            if not obs.running(pod.node):
                return None
            return ok("cluster DNS", pod.key, f"{pod.key} on {pod.node} answers ({pod.ipv4})") \
                if _answers_within(_asker(obs.machine_dir(pod.node)), pod, zone, SILENT) else \
                fail("cluster DNS", pod.key, f"DNS server {pod.key} on {pod.node} does not answer on {pod.ipv4}:53",
                     [f"dig @{pod.ipv4} dns-version.{zone} TXT: no answer for {SILENT} s"],
                     f"`testbed logs {pod.key}`; {HEAL} (it restarts a server that does not answer)")

        def client(node: str) -> Finding | None:
            pod = next((p for p in plan.pods_on(node) if p.dns.get("policy", "ClusterFirst") == "ClusterFirst"
                        and decide(plan.policies, plan.namespaces, p, p.ipv4, None, ip, 53, "UDP").allowed), None)
            if pod is None or not obs.running(node):
                return None
            got = podexec.running(plan.node(node).container, pod, obs.provider).exec(
                podexec.wrap(pod, ["dig", "+short", "+time=1", "+tries=2", f"@{ip}", name])).stdout.split()
            return ok("cluster DNS", node, f"{pod.key} on {node} resolves {name} through {ip}: {got[0]}") \
                if ip in got else \
                fail("cluster DNS", node, f"{pod.key} on {node} gets no answer for {name} from {ip}",
                     [f"dig @{ip} {name}: {' '.join(got) or 'no answer'}"],
                     f"see the servers' own checks and {node}'s kube-proxy rules here; `testbed trace {pod.key} "
                     f"{ip}:53 --protocol udp` follows one query")

        found = each(server, _servers(plan)) + each(client, [n.name for n in plan.nodes])
        return [f for f in found if f is not None]


@dataclass
class Written:
    nodes: dict[str, list[str]]  # node → the files written there (["*"]: all)
    before: dict[str, list[str]] | None  # the records the servers held, when the last sync is trusted
    after: dict[str, list[str]]


def _update(ctx: Context, pod: PodPlan, script: str) -> bool:
    """The changed records sent to the server as RFC 2136 updates (nsupdate in its pod, run by the node's
    agent); whether it took them all."""
    path = f"{folder(pod)}/update"
    agent.call(ctx.run_dir(pod.node), "files", files={path: script})
    done = agent.call(ctx.run_dir(pod.node), "run", argv=["nsupdate", "-t", "5", path], netns=pod.netns, seconds=20)
    return done.get("code") == 0


def _servers(plan: Plan) -> list[PodPlan]:
    return [p for p in plan.pods if p.namespace == NAMESPACE and p.labels.get("k8s-app") == "kube-dns"]


def _asker(run_dir: Path) -> Asker:
    """A command run on the node by its agent: its output (asked through the engine, each `docker exec` costs
    a tenth of a second or more on a busy machine, and the engine now and then loses a short one's output)."""
    def ask(argv: list[str]) -> str:
        try:
            return str(agent.call(run_dir, "run", timeout=PROBE + 5, argv=argv, seconds=PROBE).get("stdout", ""))
        except (OSError, agent.AgentError):  # the agent restarts with its node: no answer this time
            return ""

    return ask


def _answers(ask: Asker, pod: PodPlan, zone: str) -> bool:
    """Whether the server answers within three tries of a second, asked from its node: one lost or late UDP
    answer on a busy machine is no proof that it stopped (a liveness probe's failureThreshold is 3 by default)."""
    probe = ["dig", "+short", "+time=1", "+tries=3", f"@{pod.ipv4}", f"dns-version.{zone}", "TXT"]
    return dns.SCHEMA_VERSION in ask(probe)


def _heal(ctx: Context) -> int:
    """`up`: a server that stopped answering (stopped, hung) is restarted, as a failing liveness probe would
    have the kubelet do; how many were."""
    zone = ctx.plan.topology.networking.clusterDomain
    # a server this sync started is still loading its zones: only those that ran before are judged
    before = {p.key for p in ctx.previous.pods} if ctx.previous else set()

    def one(pod: PodPlan) -> bool:
        ask = _asker(ctx.run_dir(pod.node))
        if pod.key not in before or _answers(ask, pod, zone):
            return False
        ctx.say(f"DNS server {pod.key} does not answer: restarting it")
        agent.call(ctx.run_dir(pod.node), "restart", name=process_name(pod.netns, next(iter(pod.processes))))
        _answering(ask, pod, zone)
        return True

    return sum(each(one, _servers(ctx.plan)))


SILENT = 6  # seconds without an answer after which a check reports a server silent


def _answers_within(ask: Asker, pod: Any, zone: str, seconds: float) -> bool:
    """Whether the server answers within seconds: one starting loads its zones first, and a check right after a
    sync may meet a server the control plane is restarting (seen once in CI right after a lab switched its pod
    network), which is not one that stopped."""
    retrying = Retrying(retry=retry_if_result(lambda ok: not ok), stop=stop_after_delay(seconds),
                        wait=wait_exponential(multiplier=0.02, max=0.5), retry_error_callback=lambda _: False)
    return bool(retrying(_answers, ask, pod, zone))


def _answering(ask: Asker, pod: Any, zone: str) -> None:
    """`up` returns once each DNS pod answers (it may have started before its configuration was written)."""
    if not _answers_within(ask, pod, zone, 20):
        raise TestbedError(f"DNS pod {pod.key} does not answer; see `testbed logs {pod.key}`")
