"""The ingress installer: HAProxy 2.6 in master-worker mode as pods of the `testbed-ingress` namespace (a
Deployment, one pod a node, supervised by the node's agent like the DNS servers, ready when its /healthz
answers), behind the `ingress` Service (LoadBalancer when the topology has pools, and node ports 30080 and
30443 either way) and one LoadBalancer Service per Gateway. It serves both APIs from one configuration
(testbed/plan/ingresses.py and gateways.py plan it; haproxy.py renders it).

A sync writes the configuration and certificates on each proxy's node, then asks the running proxy what it
loaded: a change to endpoints only (the same structure, enough server slots) is set through the runtime API with
no reload, as HAProxy Ingress does; anything else is checked (`haproxy -c`) and reloaded through the master
socket, which hands the listening sockets to the new worker, so no connection is refused."""

from __future__ import annotations

import hashlib
from typing import Any

from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

from testbed.actions import Change, Context, each
from testbed.checks import HEAL, Finding, Observation, fail, ok
from testbed.errors import TestbedError
from testbed.installers import Installer, register
from testbed.installers.ingress import haproxy
from testbed.model.gateway import Gateway, GatewayClass, HTTPRoute
from testbed.model.ingress import Ingress
from testbed.model.topology import Topology
from testbed.plan import gateways, ingresses
from testbed.plan.cluster import Plan, PodPlan
from testbed.plan.routing import INGRESS_NAMESPACE
from testbed.runtime import agent, podexec

NAME, LABEL = "ingress", {"app.kubernetes.io/name": "testbed-ingress"}
NODE_PORTS = {80: 30080, 443: 30443}
LOADED = f"{haproxy.DIR}/loaded"  # what the running proxy was last given: configuration and certificates' digest


def wanted(topo: Topology, objects: list[Any]) -> bool:
    setting = topo.ingress.enabled
    if setting != "auto":
        return bool(setting)
    return any(isinstance(o, Ingress | Gateway | HTTPRoute | GatewayClass) for o in objects)


def proxies(plan: Plan) -> list[PodPlan]:
    return [p for p in plan.pods if p.namespace == INGRESS_NAMESPACE and p.labels.get("app.kubernetes.io/name")
            == LABEL["app.kubernetes.io/name"]]


def _served(plan: Plan) -> object:
    """What the proxies are given: their files, and where they run."""
    return (haproxy.files(plan.edge, plan.topology.networking.dualStack),
            sorted((p.key, p.node) for p in proxies(plan)))


def _digest(files: dict[str, str]) -> str:
    return hashlib.sha256("".join(f"{k}\n{v}" for k, v in sorted(files.items())
                                  if k != haproxy.CONFIG).encode()).hexdigest()[:16]


def _socket(machine: Any, path: str, commands: str) -> str:
    """The answer of one of the proxy's command sockets (the commands never hold a quote)."""
    return machine.exec(["sh", "-c", f"echo '{commands}' | socat -t 5 - UNIX-CONNECT:{path}"]).stdout


def _master(machine: Any, command: str) -> str:
    return _socket(machine, haproxy.MASTER, command)


def _workers(machine: Any) -> list[str]:
    """The current workers' pids, from the master's `show proc` (old workers are listed apart)."""
    out, current = [], False
    for line in _master(machine, "show proc").splitlines():
        if line.startswith("# workers"):
            current = True
        elif line.startswith("#"):
            current = False if line.startswith("# old") else current
        elif current and line.split():
            out.append(line.split()[0])
    return out


@retry(retry=retry_if_result(lambda ok: not ok), stop=stop_after_delay(10), wait=wait_fixed(0.02),
       retry_error_callback=lambda _: False)
def _replaced(machine: Any, before: list[str]) -> bool:
    now = _workers(machine)
    return bool(now) and now != before


def _reload(machine: Any, pod: PodPlan) -> None:
    check = machine.exec(["haproxy", "-c", "-q", "-f", haproxy.CONFIG])
    if check.exit_code != 0:
        raise TestbedError(f"the ingress proxy's configuration does not load ({pod.node}): "
                           f"{(check.stdout + check.stderr).strip()[-800:]}")
    before = _workers(machine)
    _master(machine, "reload")
    if not _replaced(machine, before):
        raise TestbedError(f"the ingress proxy on {pod.node} did not reload; see `testbed logs {pod.key}`")


def _runtime(machine: Any, commands: list[str]) -> bool:
    """The commands through the worker's runtime API; False when any was refused (then a reload does it)."""
    out = _socket(machine, haproxy.STATS, "; ".join(commands))
    return not any(word in out for word in ("Unknown", "No such", "Require", "invalid", "not found"))


def _loaded(machine: Any) -> tuple[str, str] | None:
    got = machine.exec(["cat", LOADED])
    if got.exit_code != 0 or "\n" not in got.stdout:
        return None
    digest, _, config = got.stdout.partition("\n")
    return digest, config


@register
class IngressProxy(Installer):
    name = "ingress"
    title = "Ingress and Gateway API (HAProxy)"

    def enabled(self, topo: Topology) -> bool:
        return topo.ingress.enabled is not False

    def manifests(self, topo: Topology, objects: list[Any]) -> list[dict[str, Any]]:
        if not wanted(topo, objects):
            return []
        lb = bool(topo.loadBalancer.pools)
        ports = [{"name": "http", "containerPort": 80}, {"name": "https", "containerPort": 443},
                 {"name": "health", "containerPort": haproxy.HEALTH_PORT}]
        our = gateways.our_gateways([*objects, GatewayClass.model_validate(gateways.class_manifest())])
        return [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": INGRESS_NAMESPACE}},
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": NAME, "namespace": INGRESS_NAMESPACE},
             "spec": {"replicas": min(topo.ingress.replicas, len(topo.nodes)), "selector": {"matchLabels": LABEL},
                      "template": {"metadata": {"labels": LABEL}, "spec": {"containers": [
                          {"name": "haproxy", "ports": ports,
                           "command": ["haproxy", "-W", "-db", "-S", haproxy.MASTER, "-f", haproxy.CONFIG],
                           "readinessProbe": {"httpGet": {"path": "/healthz", "port": haproxy.HEALTH_PORT},
                                              "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 2}}]}}}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": NAME, "namespace": INGRESS_NAMESPACE},
             "spec": {"type": "LoadBalancer" if lb else "NodePort", "selector": LABEL,
                      "ports": [{"name": name, "port": port, "targetPort": port, "nodePort": NODE_PORTS[port]}
                                for name, port in (("http", 80), ("https", 443))]}},
            ingresses.class_manifest(), gateways.class_manifest(),
            *gateways.service_manifests(our, LABEL, lb)]

    def _write(self, ctx: Context) -> dict[str, str]:
        wanted_files = haproxy.files(ctx.plan.edge, ctx.plan.topology.networking.dualStack)
        nodes = sorted({p.node for p in proxies(ctx.plan)})
        each(lambda node: agent.call(ctx.run_dir(node), "files", files=wanted_files,
                                     prune=[f"{haproxy.DIR}/certs"]), nodes)
        return wanted_files

    def prepare(self, ctx: Context) -> Change | None:
        """HAProxy exits at once without its configuration: it is written before the proxy pods start. Running
        proxies stop sending to the pods this sync deletes, before they go (through the runtime API: a change
        that needs a reload waits for install)."""
        pods = proxies(ctx.plan)
        if not pods or ctx.unchanged(_served):
            return None
        self._write(ctx)
        if ctx.previous is None:
            return None
        staying = {p.key for p in ctx.previous.pods} & {p.key for p in ctx.plan.pods}
        config = haproxy.render(ctx.plan.edge, ctx.plan.topology.networking.dualStack, staying)

        def one(pod: PodPlan) -> None:
            if pod.key not in staying:
                return
            machine = podexec.running(ctx.plan.node(pod.node).container, None, ctx.provider)
            before = _loaded(machine)
            if before is None or haproxy.structure(before[1]) != haproxy.structure(config):
                return
            commands = haproxy.runtime_commands(before[1], config)
            if commands and _runtime(machine, commands):
                agent.call(ctx.run_dir(pod.node), "files", files={LOADED: f"{before[0]}\n{config}"})

        each(one, pods)
        return None

    def install(self, ctx: Context) -> Change:
        pods = proxies(ctx.plan)
        if not pods:
            return self.uninstall(ctx)
        if ctx.unchanged(_served):
            return Change()  # the proxies run this configuration: nothing is sent
        files = self._write(ctx)
        config, digest = files[haproxy.CONFIG], _digest(files)

        def one(pod: PodPlan) -> bool:
            machine = podexec.running(ctx.plan.node(pod.node).container, None, ctx.provider)
            before = _loaded(machine)
            if before is not None and before == (digest, config):
                return False
            commands = haproxy.runtime_commands(before[1], config) if before is not None and \
                before[0] == digest and haproxy.structure(before[1]) == haproxy.structure(config) else None
            if commands is None or not _runtime(machine, commands):
                _reload(machine, pod)
            agent.call(ctx.run_dir(pod.node), "files", files={LOADED: f"{digest}\n{config}"})
            return True

        return Change(changed=sum(each(one, pods)))

    def uninstall(self, ctx: Context) -> Change:
        """The proxy pods go with their manifests; their files stay harmless until the next proxy's."""
        return Change()

    def check(self, obs: Observation, deep: bool) -> list[Finding]:
        plan = obs.plan
        out = [fail("edge", "ingress", w, [], "see `testbed ingresses`", "warn") for w in plan.edge.warnings]
        for key, status in plan.edge.status.items():
            bad = [c for p in status.get("parents", [{"conditions": status.get("conditions", [])}])
                   for c in p["conditions"] if c["status"] == "False" and c["type"] != "Conflicted"]
            if bad:
                out.append(fail("edge", key, f"{key}: {bad[0]['type']} is False ({bad[0]['reason']})",
                                [c["message"] for c in bad], "see `testbed ingresses`", "warn"))
        if not deep:
            return out
        config = haproxy.render(plan.edge, plan.topology.networking.dualStack)

        def one(pod: PodPlan) -> Finding | None:
            if not obs.running(pod.node):
                return None
            machine = podexec.running(plan.node(pod.node).container, None, obs.provider)
            health = machine.exec(podexec.wrap(pod, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                                     "--max-time", "1",
                                                     f"http://127.0.0.1:{haproxy.HEALTH_PORT}/healthz"])).stdout
            loaded = _loaded(machine)
            if health != "200":
                return fail("ingress proxy", pod.key, f"the proxy {pod.key} on {pod.node} does not answer",
                            [f"/healthz: {health or 'no answer'}"], f"`testbed logs {pod.key}`; {HEAL}")
            if loaded is None or loaded[1] != config:
                return fail("ingress proxy", pod.key, f"the proxy on {pod.node} runs another configuration than "
                            "the plan's", [], HEAL)
            return ok("ingress proxy", pod.key, f"{pod.key} on {pod.node} serves the plan's configuration")

        return out + [f for f in each(one, proxies(plan)) if f is not None]
