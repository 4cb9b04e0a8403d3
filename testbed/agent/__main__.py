"""Entry point of the node agent: `python3 -m testbed.agent` as the node container's main process.

A JSON-lines control socket in the run directory the host bind-mounts; one request per line, one reply per line.
"""

# ruff: noqa: E402 (what the agent leaves out of memory is left out before anything imports it)
from __future__ import annotations

from testbed.agent.light import bare_pyroute2, no_ssl

bare_pyroute2()  # before the modules below import the parts of pyroute2 they use
no_ssl()

import asyncio
import contextlib
import gc
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from testbed.agent import cniplugin, protocol, workload
from testbed.agent.delayer import Delayer
from testbed.agent.heartbeat import Heartbeat
from testbed.agent.processes import pod_processes, process_name
from testbed.agent.readiness import Prober
from testbed.agent.rules import Rules
from testbed.agent.supervisor import Supervisor, write_files
from testbed.agent.version import started_with

RUN_DIR = os.environ.get("TESTBED_RUN_DIR", "/run/testbed")
RESTART_DELAY = 0.1  # a killed netexec pod's sockets come back after this, as a container after its restart


class Agent:
    def __init__(self, node: str) -> None:
        self.node = node
        self._pods: Any = None
        self._tracer: Any = None
        self._zygote: Any = None
        self.daemons = Supervisor(os.path.join(RUN_DIR, "logs"))
        self.rules = Rules()
        self.prober = Prober(os.path.join(RUN_DIR, "readiness.json"), self.restart_container)
        self.heartbeat = Heartbeat(node, lambda: self.prober.observed)
        self.delayer = Delayer()
        self.prober.on_change = self.heartbeat.poke
        self.lock = asyncio.Lock()
        self.version = started_with()
        self.reexec = False
        self.served: list[Any] = []
        self.received: dict[str, int] = {}  # requests by op, the quiet ones aside: what a sync really sent
        self.ops: dict[str, Callable[[Any], Awaitable[Any]]] = {
            "ping": self.ping, "reexec": self.do_reexec, "status": self.status, "sync_pods": self.sync_pods,
            "daemons": self.sync_daemons, "rules": self.apply_rules, "serve": self.serve,
            "iptables": self.apply_iptables, "ipsets": self.apply_ipsets, "conntrack": self.conntrack,
            "files": self.write_files, "cni_check": self.cni_check, "kill_pod": self.kill_pod, "delay": self.delay,
            "probe": self.probe, "run": self.run,
            "compare": self.compare, "inspect": self.inspect, "wire": self.wire,
            "netops": self.netops, "agents": self.agents,
            "restart": self.restart, "trace_start": self.trace_start, "trace_stop": self.trace_stop}

    @property
    def pods(self) -> Any:
        """Made on first use: pyroute2 costs a fifth of a second of CPU to import, which every machine of a lab
        would pay at once while `up` waits, and the router and external hosts never have pods."""
        if self._pods is None:
            from testbed.agent.pods import PodManager

            self._pods = PodManager(self.node, os.path.join(RUN_DIR, "pods.json"))
        return self._pods

    @property
    def zygote(self) -> Any:
        """The fabric's: what forks the nodes' agents (agent/zygote.py)."""
        if self._zygote is None:
            from testbed.agent.zygote import Handle

            self._zygote = Handle()
        return self._zygote

    async def handle(self, req: dict[str, Any]) -> Any:
        op, args = protocol.parse(req)
        return await self.ops[op](args)

    async def ping(self, _: protocol.Ping) -> Any:
        return {"node": self.node, "pid": os.getpid(), "version": self.version}

    async def do_reexec(self, _: protocol.Reexec) -> Any:
        """Re-executed after the reply: pods and their netns stay, and the next sync reopens their sockets; the
        daemons are stopped first, since the new agent starts its own."""
        async with self.lock:
            await self.daemons.sync([])
            self.reexec = True
            return {"version": self.version}

    async def sync_pods(self, req: protocol.SyncPods) -> Any:
        """Processes of pods that go or change stop first (they would hold the pod's netns), then the pods
        are synced, then the processes of the pods as they are now run."""
        async with self.lock:
            started: list[str] = []
            await self.daemons.sync(pod_processes(self.pods.unchanged(req.net, req.pods)), "pods", started)
            if req.release:
                return {"released": await self.pods.release([p["netns"] for p in req.pods]), "started": started}
            result = await self.pods.sync(req.net, req.pods, req.verify)
            wired = [p for p in req.pods if (held := self.pods.pods.get(p["netns"])) is None or held.wired]
            await self.daemons.sync(pod_processes(wired), "pods", started)  # no network, no containers
            result["started"] = started
            self.prober.sync(req.pods, {f"{p.spec['namespace']}/{p.spec['name']}": p.errors[0]
                                        for p in self.pods.pods.values() if not p.wired})
            again = set(started)
            self.prober.restarted([(f"{p['namespace']}/{p['name']}", c) for p in req.pods
                                   for c in p.get("processes") or {} if process_name(p["netns"], c) in again])
            return result

    async def sync_daemons(self, req: protocol.Daemons) -> Any:
        async with self.lock:
            return await self.daemons.sync(req.procs, group=req.group)

    async def apply_rules(self, req: protocol.Rules) -> Any:
        async with self.lock:
            if req.patch is not None:
                return await self.rules.patch(req.family, req.table, req.patch, req.base, req.token)
            return await self.rules.apply(req.family, req.table, req.text, req.token, req.verify)

    async def apply_iptables(self, req: protocol.Iptables) -> Any:
        async with self.lock:
            if req.base is not None:
                return await self.rules.iptables_patch(req.v4, req.v6, req.owner, req.base, req.token)
            return await self.rules.iptables(req.v4, req.v6, req.owner, req.token, req.verify)

    async def apply_ipsets(self, req: protocol.Ipsets) -> Any:
        async with self.lock:
            return await self.rules.ipsets(req.prefix, req.sets, req.keep, req.verify)

    async def compare(self, req: protocol.Compare) -> Any:
        """Read-only: no lock, a check never waits for a sync."""
        if req.kind == "nft":
            return await self.rules.compare_nft(req.family, req.table, req.text)
        if req.kind == "ipsets":
            return await self.rules.compare_ipsets(req.prefix, req.sets)
        return {f"v{v}": await self.rules.compare_iptables(tool, text)
                for v, tool, text in ((4, "iptables-restore", req.v4), (6, "ip6tables-restore", req.v6)) if text}

    async def inspect(self, req: protocol.Inspect) -> Any:
        from testbed.agent.netstate import inspect

        out = inspect(self.ipr)
        if req.pods:
            out["pods"] = self.pods.inspect()
        return out

    @property
    def ipr(self) -> Any:
        return self.pods.ipr

    async def trace_start(self, req: protocol.TraceStart) -> Any:
        return await self.tracer.start(req.protocol, req.sport)

    async def trace_stop(self, req: protocol.TraceStop) -> Any:
        return await self.tracer.stop(req.protocol, req.sport, req.addresses, req.seen)

    @property
    def tracer(self) -> Any:
        if self._tracer is None:
            from testbed.agent.trace import Tracer

            self._tracer = Tracer(self.rules.nft)
        return self._tracer

    async def restart_container(self, spec: dict[str, Any], container: str) -> None:
        """What the kubelet does to a container its liveness (or startup) probe gave up on: its process is killed
        and started again; a netexec pod, which runs none, has its sockets made again. Either counts a restart."""
        if container in (spec.get("processes") or {}):
            self.daemons.kill(process_name(spec["netns"], container))
        else:
            await self.pods.restart_sockets(spec["netns"])

    async def delay(self, req: protocol.Delay) -> Any:
        if req.ms is None:
            return self.delayer.counters()
        return await self.delayer.set(req.ms, req.jitter)

    async def probe(self, req: protocol.Probe) -> Any:
        self.prober.now(req.pods)
        return {}

    async def netops(self, req: protocol.Netops) -> Any:
        from testbed.agent import netops

        return await asyncio.to_thread(netops.run, req.name, req.args)

    async def wire(self, req: protocol.Wire) -> Any:
        from testbed.agent import fabric

        return await asyncio.to_thread(fabric.wire, req.bridge, req.mtu, req.ports, req.stitch)

    async def agents(self, req: protocol.Agents) -> Any:
        return await asyncio.to_thread(self.zygote.spawn, req.machines)

    async def run(self, req: protocol.Run) -> Any:
        argv = (["ip", "netns", "exec", req.netns] if req.netns else []) + req.argv
        stdin = asyncio.subprocess.PIPE if req.input else asyncio.subprocess.DEVNULL
        proc = await asyncio.create_subprocess_exec(*argv, stdin=stdin,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(req.input.encode() if req.input else None),
                                              req.seconds)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return {"code": None, "stdout": "", "stderr": f"no answer within {req.seconds} s"}
        return {"code": proc.returncode, "stdout": out.decode(errors="replace")[-65536:],
                "stderr": err.decode(errors="replace")[-65536:]}

    async def kill_pod(self, req: protocol.KillPod) -> Any:
        pod = self.pods.pods.get(req.netns)
        if pod is None:
            return {"killed": 0}
        if pod.spec.get("processes"):
            return {"killed": sum(self.daemons.kill(process_name(req.netns, c)) for c in pod.spec["processes"])}
        await self.pods.restart_sockets(req.netns, RESTART_DELAY)
        return {"killed": 1}

    async def restart(self, req: protocol.Restart) -> Any:
        return {"restarted": self.daemons.kill(req.name)}

    async def write_files(self, req: protocol.Files) -> Any:
        return {"changed": write_files(req.files, req.prune)}

    async def cni_check(self, _: protocol.CniCheck) -> Any:
        async with self.lock:
            from testbed.agent import podhealth  # pyroute2: machines with pods alone need it

            return {"pods": await podhealth.cni_check(self.pods)}

    async def conntrack(self, req: protocol.Conntrack) -> Any:
        return await self.rules.forget_udp(req.flows)

    async def serve(self, req: protocol.Serve) -> Any:
        """netexec answers in this machine's own netns; re-sent on every sync, so old sockets are replaced."""
        async with self.lock:
            for server in self.served:
                server.close()
            self.served = []
            loop = asyncio.get_running_loop()
            ident = workload.Identity(req.name, "external", self.node, (), req.name)
            for port in req.ports:
                sock = workload.open_socket(port["protocol"], port["port"], dual=req.dual)
                self.served.append(await workload.serve(loop, sock, ident, port["port"]))
            return {"serving": len(self.served)}

    async def status(self, req: protocol.Status) -> Any:
        if req.brief:
            return {"node": self.node, "pods": self.pods.status(), "version": self.version}
        return {"node": self.node, "pods": self.pods.status(), "links": self.pods.links(),
                "routes": self.pods.routes(), "daemons": self.daemons.status(), "rss_kib": _rss_kib(),
                "version": self.version, "received": self.received}

    async def client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                start = time.monotonic()
                req: dict[str, Any] = {}
                try:
                    req = json.loads(line)
                    if req.get("op") not in QUIET:
                        self.received[req.get("op")] = self.received.get(req.get("op"), 0) + 1
                    reply = {"ok": True, "result": await self.handle(req)}
                    if req.get("op") not in QUIET:
                        log(f"{req.get('op')} done in {(time.monotonic() - start) * 1000:.1f} ms")
                except Exception as err:
                    reply = {"ok": False, "error": f"{type(err).__name__}: {err}",
                             "trace": traceback.format_exc()}
                    log(f"{req.get('op')} failed after {(time.monotonic() - start) * 1000:.1f} ms: "
                        f"{type(err).__name__}: {err}")
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
                del reply
                if req.get("op") != "ping":
                    _collect()
                if self.reexec:
                    log("re-executing with the code now on disk")
                    os.execv(sys.executable, [sys.executable, "-m", "testbed.agent"])
        finally:
            writer.close()


QUIET = {"ping", "status", "inspect", "compare"}  # asked often, by checks: not worth a line each


def log(message: str) -> None:
    """A line on the agent's own output, which the engine keeps (`testbed logs NODE/agent`)."""
    sys.stderr.write(f"{time.strftime('%H:%M:%S')} {message}\n")
    sys.stderr.flush()


def _collect() -> None:
    """What a request left behind, freed at once: pyroute2's messages hold reference cycles, which only the
    collector frees, and they outlived the young passes it makes on its own (one node's `status` read about
    9,000 such objects on a 200-node lab, and each added 1.7 MiB to the agent until a rare full pass). Then the
    heap's free pages back to the kernel: glibc keeps them otherwise."""
    import ctypes

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def own_name_resolves(hosts: str = "/etc/hosts") -> None:
    """localhost and the machine's own name in its /etc/hosts: a machine whose engine networking is disabled
    (runtime/docker.run_node) gets an empty file, and a daemon that looks its name up (knotd does, for its
    identity) would wait seconds for the lab's unreachable resolver."""
    name = os.uname().nodename
    lines = {"localhost": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
             name: f"127.0.1.1\t{name}\n"}
    try:
        with open(hosts) as f:
            known = {w for line in f if not line.lstrip().startswith("#") for w in line.split()[1:]}
        if missing := "".join(text for word, text in lines.items() if word not in known):
            with open(hosts, "a") as f:
                f.write(missing)
    except OSError:
        pass


def reap_inherited() -> None:
    """Children an earlier run of this process left (it re-executed itself with new code) are reaped: they are
    this process's, so tini never will."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def pidfd_children() -> None:
    """Plugins and daemons this agent starts are awaited through a pidfd on the loop: Python 3.11's default
    watcher starts a thread for each child (a CNI pod's ADD execs five plugins)."""
    if sys.version_info < (3, 12) and hasattr(os, "pidfd_open"):
        watcher = asyncio.PidfdChildWatcher()
        watcher.attach_loop(asyncio.get_running_loop())
        asyncio.set_child_watcher(watcher)


async def main() -> None:
    # everything made so far (the modules; in a forked agent, also what its zygote made for other nodes) out of
    # the collector's reach: the pass after each request (_collect) then reads only this agent's own objects, and
    # writes to no page it shares with the zygote
    gc.freeze()
    reap_inherited()
    pidfd_children()
    own_name_resolves()
    log(f"agent of {os.environ.get('TESTBED_NODE', os.uname().nodename)} starting, code {started_with()}")
    with contextlib.suppress(OSError):  # testbed's wiring as a CNI plugin, for conflists that chain it
        cniplugin.install()
    agent = Agent(os.environ.get("TESTBED_NODE", os.uname().nodename))
    path = os.path.join(RUN_DIR, "agent.sock")
    tmp = path + ".new"
    if os.path.exists(tmp):
        os.unlink(tmp)
    server = await asyncio.start_unix_server(agent.client, path=tmp, limit=64 * 1024 * 1024)
    agent.heartbeat.start()
    if os.environ.get("TESTBED_ROLE") == "fabric":
        agent.zygote.start()  # warm (a third of a second of CPU) while the nodes' containers start
    os.replace(tmp, path)  # the socket appears only once it accepts, so the host's wait is exact
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
