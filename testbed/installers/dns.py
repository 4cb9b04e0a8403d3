"""Cluster DNS: BIND 9 in kube-system pods (Deployment `kube-dns`, 2 replicas on different nodes when there are
2+ nodes) behind the `kube-dns` Service at the 10th address of each service range, through kube-proxy.

BIND, not Knot: it is authoritative for the cluster zone and the reverse zones and, for every other name,
forwards to the lab's external DNS server, in one daemon (Knot is authoritative only). Records are rendered from
the plan (testbed/plan/dns.py) into zone files on each node; on every sync BIND reloads what changed
(`rndc reload` of those zones alone), so a Service or pod change is answered within the sync, with no restart;
a sync that changes no record sends nothing.
"""

from __future__ import annotations

import zlib
from typing import Any

from tenacity import retry, retry_if_result, stop_after_delay, wait_exponential

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


def named_conf(plan: Plan, zones: list[str]) -> str:
    return (
        options(plan, DIR)
        + f'key "testbed" {{ algorithm hmac-sha256; secret "{KEY}"; }};\n'
        'controls { inet 127.0.0.1 port 953 allow { 127.0.0.1; } keys { "testbed"; }; };\n'
        + "".join(f'zone "{z}" {{ type primary; file "{DIR}/{z}.zone"; }};\n' for z in zones))


RNDC_CONF = f'key "testbed" {{ algorithm hmac-sha256; secret "{KEY}"; }};\n' \
            'options { default-key "testbed"; default-server 127.0.0.1; };\n'


def files(plan: Plan) -> dict[str, str]:
    """named.conf, rndc.conf and every zone file, as the nodes get them (pure)."""
    zone = plan.topology.networking.clusterDomain
    rows, reverse = dns.records(plan, zone)
    ns_ip = plan.topology.dns_ip()
    # BIND reloads a zone whose file changed; the serial follows the content, so an unchanged zone stays put
    out = {f"{DIR}/{zone}.zone": dns.zone_file(zone, zone, ns_ip, rows, _serial(rows))}
    out |= {f"{DIR}/{rz}.zone": dns.zone_file(rz, zone, ns_ip, rr, _serial(rr)) for rz, rr in reverse.items()}
    out[f"{DIR}/named.conf"] = named_conf(plan, [zone, *reverse])
    out[f"{DIR}/rndc.conf"] = RNDC_CONF
    return out


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
                          {"name": "bind", "command": ["named", "-g", "-c", f"{DIR}/named.conf"], "ports": ports,
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
    def _write(ctx: Context) -> dict[str, list[str]]:
        """The configuration and zones on every node that runs a DNS pod: only the files that changed since the
        last sync, to a node that holds it; {node: the files written (["*"]: all, as they were unknown)}."""
        wanted = files(ctx.plan)
        before = files(ctx.previous) if ctx.trusted and ctx.previous is not None else {}
        held = {p.node for p in _servers(ctx.previous)} if before and ctx.previous is not None else set()
        delta = {path: text for path, text in wanted.items() if before.get(path) != text}

        def one(node: str) -> list[str]:
            send = delta if node in held else wanted
            if not send or not agent.call(ctx.run_dir(node), "files", files=send)["changed"]:
                return []
            return sorted(send) if node in held else ["*"]

        nodes = sorted({p.node for p in _servers(ctx.plan)})
        return {node: changed for node, changed in zip(nodes, each(one, nodes), strict=True) if changed}

    def prepare(self, ctx: Context) -> Change:
        """BIND exits at once without its configuration: it is written before the pods start."""
        written = self._write(ctx)
        ctx.notes[self.name] = written  # news to the servers already running: install has them reload it
        return Change(changed=len(written))

    def install(self, ctx: Context) -> Change:
        # what prepare wrote in this sync is news to the servers already running; a sync without prepare (the
        # control plane's, on a readiness change) writes here
        written: dict[str, list[str]] = ctx.notes.pop(self.name) if self.name in ctx.notes else self._write(ctx)
        healed = _heal(ctx) if ctx.verify else 0
        if not written:
            return Change(changed=healed)

        def reload(pod: PodPlan) -> None:
            paths = written.get(pod.node)
            if not paths:
                return
            # only the zones whose files changed; the whole server when its configuration did
            zones = [p.removeprefix(f"{DIR}/").removesuffix(".zone") for p in paths if p.endswith(".zone")]
            whole = "*" in paths or f"{DIR}/named.conf" in paths
            rndc = f"rndc -c {DIR}/rndc.conf reload"
            script = rndc if whole else " && ".join(f"{rndc} {zone}" for zone in zones)
            machine = podexec.running(ctx.plan.node(pod.node).container, pod)
            if script:
                machine.exec(podexec.wrap(pod, ["sh", "-c", script]))
            _answering(machine, pod, ctx.plan.topology.networking.clusterDomain)

        each(reload, _servers(ctx.plan))
        return Change(changed=len(written))

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
            machine = podexec.running(plan.node(pod.node).container, pod, obs.provider)
            return ok("cluster DNS", pod.key, f"{pod.key} on {pod.node} answers ({pod.ipv4})") \
                if _answers(machine, pod, zone) else \
                fail("cluster DNS", pod.key, f"DNS server {pod.key} on {pod.node} does not answer on {pod.ipv4}:53",
                     [f"dig @{pod.ipv4} dns-version.{zone} TXT: no answer within 1 s"],
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


def _servers(plan: Plan) -> list[PodPlan]:
    return [p for p in plan.pods if p.namespace == NAMESPACE and p.labels.get("k8s-app") == "kube-dns"]


def _answers(machine: Any, pod: PodPlan, zone: str) -> bool:
    probe = ["dig", "+short", "+time=1", "+tries=1", f"@{pod.ipv4}", f"dns-version.{zone}", "TXT"]
    return dns.SCHEMA_VERSION in machine.exec(probe).stdout


def _heal(ctx: Context) -> int:
    """`up`: a server that stopped answering (stopped, hung) is restarted, as a failing liveness probe would
    have the kubelet do; how many were."""
    zone = ctx.plan.topology.networking.clusterDomain
    # a server this sync started is still loading its zones: only those that ran before are judged
    before = {p.key for p in ctx.previous.pods} if ctx.previous else set()

    def one(pod: PodPlan) -> bool:
        machine = podexec.running(ctx.plan.node(pod.node).container, pod, ctx.provider)
        if pod.key not in before or _answers(machine, pod, zone):
            return False
        ctx.say(f"DNS server {pod.key} does not answer: restarting it")
        agent.call(ctx.run_dir(pod.node), "restart", name=process_name(pod.netns, next(iter(pod.processes))))
        _answering(machine, pod, zone)
        return True

    return sum(each(one, _servers(ctx.plan)))


@retry(retry=retry_if_result(lambda ok: not ok), stop=stop_after_delay(20),
       wait=wait_exponential(multiplier=0.02, max=0.5), retry_error_callback=lambda state: state.outcome.result())
def _check(machine: Any, pod: Any, zone: str) -> bool:
    return _answers(machine, pod, zone)


def _answering(machine: Any, pod: Any, zone: str) -> None:
    """`up` returns once each DNS pod answers (it may have started before its configuration was written)."""
    if not _check(machine, pod, zone):
        raise TestbedError(f"DNS pod {pod.key} does not answer; see `testbed logs {pod.key}`")
