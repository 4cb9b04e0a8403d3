"""The lab's control plane: what the kubelet, the endpoints controller and the node lifecycle controller do in a
cluster, told rather than polling.

- The nodes' agents push heartbeats (a lease with its time) and their pods' readiness, a line a second and at
  once on a change, to a socket this process listens on in each node's run folder (agent/heartbeat.py). A
  readiness change re-syncs the installers (endpoints, DNS, policy, ingress) on every node.
- Docker's event stream says when a lab machine starts again (restarted, or recreated): the lab is converged
  (kubelet: its pods, links, routes, rules and daemons come back with the same IPs).
- A node whose heartbeat stops for controlPlane.nodeMonitorGracePeriod is NotReady: its pods are not ready, so
  Services, DNS and the ingress stop sending to them. After controlPlane.podEvictionTimeout its Deployment pods
  are recreated on healthy nodes under new names (bare pods are not); when it comes back, the converge removes
  what it still holds of them.

Run as `python -m testbed.control.controller LAB` by its supervisor (control/supervisor.py), which starts it
again when it dies. It ends by itself when the lab is gone."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tenacity import RetryCallState, RetryError, Retrying, retry_if_exception_type, wait_fixed

from testbed import events, lab, state
from testbed.actions import each
from testbed.runtime.machines import elsewhere

TICK = 0.25  # how often lease ages are compared with the grace period


def _log(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)


class Controller:
    def __init__(self, name: str) -> None:
        self.name = name
        st = state.load(name)
        if st is None:
            raise SystemExit(0)
        cp = st.topology.get("controlPlane") or {}
        self.grace = float(cp.get("nodeMonitorGracePeriod", 4.0))
        self.eviction = float(cp.get("podEvictionTimeout", 10.0))
        self.nodes = [n["name"] for n in self._nodes(st)]
        self.leases = dict.fromkeys(self.nodes, time.time())  # a grace period from our own start
        self.readiness: dict[str, dict[str, Any]] = {}
        self.work: asyncio.Queue[str] = asyncio.Queue()
        self.servers: dict[str, asyncio.AbstractServer] = {}
        self.relays: set[str] = set()  # nodes on another host, whose beats come through their engine
        self.started = time.time()  # Docker's events from here on: none is lost before the watch subscribes
        # nodes whose container stopped: NotReady at once, as the cloud node lifecycle controller marks a node
        # whose instance is shut down, rather than after the grace period (a hung node still takes that long)
        self.stopped: set[str] = set()
        self.pids: dict[str, Any] = {}  # each node's agent, by its beats: a new one means the node started again
        self.state = state.Watched(name)

    @staticmethod
    def _nodes(st: state.LabState) -> list[dict[str, Any]]:
        nodes = st.topology.get("nodes", [])
        return nodes if isinstance(nodes, list) else []

    async def listen(self) -> None:
        """A socket for each node's agent, made again when its folder was made anew (the lab was replaced, or
        a node was added by `up`) since it was last made. A node on another host beats through its engine."""
        base = state.run_dir(self.name)  # resolved once a round: at 200 nodes, once a node took 15 % of a core
        for node in self.nodes:
            folder = base / node
            path = folder / "control.sock"
            if node in self.servers and os.path.exists(path):  # the usual round: one stat a node
                continue
            if node in self.relays or elsewhere(folder) is not None:
                if node not in self.relays:
                    self.relays.add(node)
                    threading.Thread(target=self._relayed_beats, args=(node, asyncio.get_running_loop()),
                                     daemon=True).start()
                continue
            if not folder.is_dir():
                continue
            if (old := self.servers.pop(node, None)) is not None:
                old.close()
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            self.servers[node] = await asyncio.start_unix_server(self._beats, path=str(path))

    def _relayed_beats(self, node: str, loop: asyncio.AbstractEventLoop) -> None:
        """A node on another host: its agent's beats reach a socket a relay listens on in the node (`socat`, run
        through the engine), whose output is read here; the relay is started again when it ends (the node
        restarted), for as long as the lab is there."""
        from testbed.runtime import podexec

        listen = ["socat", "-u", "UNIX-LISTEN:/run/testbed/control.sock,fork,unlink-early", "STDOUT"]

        def relay() -> None:
            machine = podexec.elsewhere(f"{self.name}-{node}")
            if machine is None or machine.state != "running":
                raise OSError("not running")
            stream = machine.stream(listen)
            stream.settimeout(None)
            while True:
                loop.call_soon_threadsafe(self._beat, json.loads(stream.line()))

        def said(rs: RetryCallState) -> None:
            if rs.outcome is not None and not isinstance(rs.outcome.exception(), (OSError, EOFError, ValueError)):
                _log(f"{node}: its beats through the engine: {rs.outcome.exception()!r}")  # its host unreachable

        # each try ends with the relay (the node restarted, its host went away): another, until the lab is gone
        with contextlib.suppress(RetryError):
            for attempt in Retrying(retry=retry_if_exception_type(Exception), wait=wait_fixed(0.5),
                                    before_sleep=said, stop=lambda _: state.load(self.name) is None):
                with attempt:
                    relay()

    def _beat(self, beat: dict[str, Any]) -> None:
        node = beat.get("node")
        if node not in self.leases:
            return
        self.leases[node] = time.time()
        if self.pids.get(node, beat.get("pid")) != beat.get("pid"):  # the node's agent started anew
            self.work.put_nowait(f"heal {node}")
        self.pids[node] = beat.get("pid")
        if beat.get("readiness") != self.readiness.get(node):
            changed = node in self.readiness
            self.readiness[node] = beat.get("readiness") or {}
            if node in self.relays:  # its agent's readiness.json is on its host: kept here too, for the syncs
                folder = state.run_dir(self.name) / node
                with contextlib.suppress(OSError):
                    (folder / "readiness.json.tmp").write_text(json.dumps({"pods": self.readiness[node]}))
                    os.replace(folder / "readiness.json.tmp", folder / "readiness.json")
            if changed:
                self.work.put_nowait("sync")

    async def _beats(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                self._beat(json.loads(line))
        # the controller stopping cancels every connection: its log should not fill with their tracebacks
        except (ConnectionError, ValueError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                writer.close()

    def watch_docker(self, loop: asyncio.AbstractEventLoop) -> None:
        """Docker's events for this lab's machines, a thread per engine: a machine that starts again is converged."""
        from testbed import hosts
        from testbed.runtime.machines import Provider

        engines = list(hosts.engines_of(self.name).values())
        for other in engines[1:]:
            threading.Thread(target=self._watch, args=(other, loop), daemon=True).start()
        self._watch(engines[0] if engines else Provider(), loop)

    def _watch(self, engine: Any, loop: asyncio.AbstractEventLoop) -> None:
        for machine, status in engine.events(self.name, since=self.started):
            if status in ("start", "unpause"):
                loop.call_soon_threadsafe(self.stopped.discard, machine)
                loop.call_soon_threadsafe(self.work.put_nowait, f"heal {machine}")
            elif status == "die":
                loop.call_soon_threadsafe(self.stopped.add, machine)

    async def tick(self) -> None:
        """Node conditions from lease ages: NotReady past the grace period, evicted past the timeout, Ready
        again when beats come back."""
        while True:
            await asyncio.sleep(TICK)
            now = time.time()
            st = self.state.get()
            if st is None:
                return  # the lab is gone: so is its control plane
            self.nodes = [n["name"] for n in self._nodes(st)]
            for node in self.nodes:
                self.leases.setdefault(node, now)
            await self.listen()
            if any(f.get("until") and f["until"] <= now for f in st.faults):  # a fault's --for ran out
                self.work.put_nowait("faults")
            # what takes the lab's lock waits in a thread: held by a long apply, it must not stop this loop from
            # reading the beats, or every lease would age behind it and each node look dead once it is free
            for node in self.nodes:
                cond = st.conditions.get(node, {"ready": True, "since": now})
                fresh = now - self.leases[node] < self.grace and node not in self.stopped
                if cond["ready"] and not fresh:
                    late = node not in self.stopped
                    why = f"no heartbeat for {now - self.leases[node]:.1f} s" if late else "its container stopped"
                    # a beat that came while the lock was waited for keeps it Ready
                    still = (lambda n=node, seen=self.leases[node]: self.leases[n] == seen) if late else None
                    if await asyncio.to_thread(self._condition, node, False, why, still):
                        self.work.put_nowait("sync")
                elif not cond["ready"] and fresh:
                    await asyncio.to_thread(self._condition, node, True, "heartbeats again")
                    self.work.put_nowait(f"heal {node}")
                elif not cond["ready"] and not cond.get("evicted") and now - cond["since"] >= self.eviction:
                    await asyncio.to_thread(self._evict, node)
                    self.work.put_nowait("converge")

    def _condition(self, node: str, ready: bool, why: str, still: Callable[[], bool] | None = None) -> bool:
        """The node's condition set, unless still (asked under the lab's lock) says it no longer holds; whether
        it was."""
        with state.locked(self.name):
            st = state.load(self.name)
            if st is None or (still is not None and not still()):
                return False
            st.conditions[node] = {"ready": ready, "since": time.time(), "evicted": False}
            st.save()
        word = "Ready" if ready else "NotReady"
        _log(f"node {node} is {word}: {why}")
        events.emit(self.name, f"Node{word}", f"node/{node}", f"node {node} is {word}: {why}",
                    kind="Normal" if ready else "Warning", node=node, ready=ready)
        return True

    def _evict(self, node: str) -> None:
        """Its Deployment pods get a new name, so the next converge places them on healthy nodes."""
        with state.locked(self.name):
            st = state.load(self.name)
            if st is None:
                return
            _, plan = lab.current_plan(self.name)
            gone = [p for p in plan.pods_on(node) if p.replica]
            for pod in gone:
                st.generations[pod.replica] = st.generations.get(pod.replica, 0) + 1  # type: ignore[index]
            st.conditions[node] = {**st.conditions.get(node, {}), "evicted": True}
            st.save()
        _log(f"node {node}: evicting {len(gone)} pod(s)")
        for pod in gone:
            events.emit(self.name, "Evicted", f"pod/{pod.key}", f"{pod.key} evicted from NotReady node {node}; "
                                                                "its Deployment recreates it elsewhere",
                        kind="Warning", node=node)

    async def work_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = {await self.work.get()}
            while not self.work.empty():  # what piled up while the last job ran is done once
                jobs.add(self.work.get_nowait())
            start = time.monotonic()
            try:
                if "faults" in jobs:
                    from testbed import faults

                    cleared = await loop.run_in_executor(None, lambda: faults.clear(self.name, expired_only=True))
                    jobs.discard("faults")
                    _log(f"faults whose time ran out, undone: {', '.join(f['id'] for f in cleared) or 'none'}")
                    if not jobs:
                        continue
                if any(j.startswith(("heal", "converge")) for j in jobs):
                    machines = sorted(j.split(" ", 1)[1] for j in jobs if j.startswith("heal ") and " " in j)
                    check = (lambda plan, names=tuple(machines): all(each(lambda m: _intact(plan, m), names))) \
                        if machines and not any(j.startswith("converge") for j in jobs) else None
                    done = await loop.run_in_executor(None, lab.heal, self.name, check, machines)
                    what = "converged" if done else "checked"
                else:
                    await loop.run_in_executor(None, lab.refresh, self.name)
                    what = "re-synced endpoints, DNS and policies"
                took = time.monotonic() - start
                _log(f"{', '.join(sorted(jobs))}: {what} in {took:.2f}s")
                events.emit(self.name, "Synced", "controller", f"{what} ({', '.join(sorted(jobs))}) in {took:.2f}s",
                            duration=round(took, 4), jobs=sorted(jobs))
            except Exception as err:  # the lab may be changing under us (down, up): try again next round
                _log(f"{sorted(jobs)} failed: {type(err).__name__}: {err}")
                events.emit(self.name, "Failed", "controller", f"{type(err).__name__}: {err}", kind="Warning")
                if state.load(self.name) is None:
                    return


def _intact(plan: Any, machine: str) -> bool:
    """A node whose agent answers and holds exactly the pods planned on it: a start the lab made itself (`up`)."""
    from testbed.runtime import agent

    if machine not in {n.name for n in plan.nodes}:
        return False
    try:
        # a frozen node (node-pause) takes the connection and never answers: the heal holds the lab meanwhile
        reply = agent.call(state.run_dir(plan.lab) / machine, "status", timeout=5, brief=True)
    except Exception:
        return False
    held = reply.get("pods", [])
    planned = {p.netns for p in plan.pods_on(machine)}
    # a node that was frozen past its eviction still holds the evicted pods: not intact
    return planned <= {p["netns"] for p in held if p.get("present")} and {p["netns"] for p in held} <= planned


async def run(name: str) -> None:
    controller = Controller(name)
    pid_file = state.run_dir(name) / "controller.pid"
    pid_file.write_text(str(os.getpid()))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await controller.listen()
    from testbed.control import api
    from testbed.runtime.readiness import code_version

    served = api.serve(name, code_version())  # the command line's apply and delete, done here
    threading.Thread(target=controller.watch_docker, args=(loop,), daemon=True).start()
    tasks = [loop.create_task(controller.tick()), loop.create_task(controller.work_loop())]
    for node in controller.nodes:  # a machine that started while no controller watched (its start, a crash)
        controller.work.put_nowait(f"heal {node}")
    await asyncio.wait([*tasks, loop.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()
    for server in controller.servers.values():
        server.close()
    served.server_close()
    (state.run_dir(name) / api.SOCKET).unlink(missing_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if Path(pid_file).read_text() == str(os.getpid()):
            pid_file.unlink()


def main(name: str) -> None:
    with contextlib.suppress(SystemExit):
        asyncio.run(run(name))


if __name__ == "__main__":
    main(state.check_name(sys.argv[1]))
