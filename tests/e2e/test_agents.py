"""Nodes' agents forked by their host's fabric (agent/zygote.py), on a lab of their own: each runs in its node's
namespaces and cgroup and shares the fabric's pages (and asks the kernel to merge those it copied alike); it
outlives a restart of the fabric, which still watches it; and its death stops its node, which `up` brings back
with its pods, as when the agent was the node's main process."""

import contextlib
import os
import signal
from pathlib import Path

import docker
from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

from testbed import lab as labs
from testbed import state
from testbed.pytest_plugin import Lab
from testbed.runtime import agent, doctor
from testbed.runtime import docker as rt

TOPOLOGY = """\
apiVersion: testbed/v1alpha1
kind: Topology
name: e2e-agents
nodes: 2
manifests:
  - {apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {nodeName: node1, containers: [{name: c}]}}
"""
quiet = {"say": lambda _: None}


def _agent_pid(container: docker.models.containers.Container) -> int:
    """The agent's PID on this host, from the node's own processes (its cgroup's, as `docker top` lists them);
    not a child it has just forked to run a command, which shows the same command line until it execs."""
    top = container.top(ps_args="-o pid,args")
    found = {int(row[0]) for row in top["Processes"] if "testbed.agent" in row[1]}
    parents = {}
    for pid in found:
        with contextlib.suppress(OSError):  # a child that ended meanwhile
            parents[pid] = _parent(pid)
    pids = [pid for pid, parent in parents.items() if parent not in found]
    assert len(pids) == 1, top["Processes"]
    return pids[0]


def _shared_kib(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return sum(int(line.split()[1]) for line in f if line.startswith(("Shared_Dirty:", "Shared_Clean:")))


def _private_kib(pid: int, library: str) -> int:
    """What the process wrote for itself of a shared library's mappings (relocations, data)."""
    total, inside = 0, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and not fields[0].endswith(":"):
                inside = library in line
            elif inside and fields[0] == "Private_Dirty:":
                total += int(fields[1])
    return total


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _grouping() -> bool:
    """Whether this engine serves a lab's machines from shared runc shims (`testbed doctor` says so too)."""
    return bool(doctor.shims_shared(docker.from_env()))


def _shared_as_sharded(machines: list[docker.models.containers.Container]) -> set[int]:
    """The machines' shims, checked: where the engine groups, machines of the same shard share their shim, and
    only they; elsewhere each has its own."""
    shims = _shims(machines)
    if not _grouping():
        assert len(shims) == len(machines)
        return shims
    assert len(shims) == len({_shard(m) for m in machines}) < len(machines), shims
    for m in machines:
        assert {n.id for n in machines if _shims([n]) == _shims([m])} == {n.id for n in machines
                                                                         if _shard(n) == _shard(m)}
    return shims


def _shard(machine: docker.models.containers.Container) -> int:
    return rt.shim_shard(machine.labels["testbed.node"])


def _shims(machines: list[docker.models.containers.Container]) -> set[int]:
    """The engine's processes that hold the machines: each one's init's parent."""
    return {_parent(m.attrs["State"]["Pid"]) for m in machines}


@retry(retry=retry_if_result(lambda s: s), stop=stop_after_delay(20), wait=wait_fixed(0.2),
       retry_error_callback=lambda rs: rs.outcome.result())
def _alive(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return False


@retry(retry=retry_if_result(lambda s: s not in ("exited", "replaced")), stop=stop_after_delay(20),
       wait=wait_fixed(0.2), retry_error_callback=lambda rs: rs.outcome.result())
def _state(container: docker.models.containers.Container) -> str:
    """"replaced": the control plane saw the node stop and made it again first (the restarted fabric's start
    converges the lab, which may come just after a node stopped)."""
    try:
        container.reload()
    except docker.errors.NotFound:
        return "replaced"
    return str(container.status)


@retry(retry=retry_if_result(lambda s: s != "ready"), stop=stop_after_delay(20), wait=wait_fixed(0.2),
       retry_error_callback=lambda rs: rs.outcome.result())
def _phase(lab: Lab) -> str:
    return str(lab.status()["phase"])


def test_a_forked_agent_lives_in_its_node_outlives_the_fabric_and_takes_its_node_down_when_it_dies(tmp_path: Path):
    topology = tmp_path / "agents.yaml"
    topology.write_text(TOPOLOGY)
    ctx = labs.up(topology, **quiet)
    client = docker.from_env()
    lab, node = Lab(ctx.lab), ctx.plan.node("node1")
    try:
        c = client.containers.get(node.container)
        pid, init = _agent_pid(c), c.attrs["State"]["Pid"]
        for ns in ("pid", "net", "mnt", "uts", "ipc"):
            assert os.readlink(f"/proc/{pid}/ns/{ns}") == os.readlink(f"/proc/{init}/ns/{ns}"), ns
        with open(f"/proc/{_parent(pid)}/cmdline") as f:
            assert "testbed.agent.zygote" in f.read()
        assert _shared_kib(pid) > 4096  # the zygote's modules, not copied
        # the agent's rules use libnftables from its start; the zygote loaded it, so its relocated pages are shared
        # (each agent that loaded it itself copied about 80 KiB of it)
        assert _private_kib(pid, "/libnftables.so") < 32
        merging = Path(f"/proc/{pid}/ksm_stat")  # kernel 6.4+: what it copied alike, ksmd may fold back into one
        if merging.exists():
            assert "ksm_merge_any: yes" in merging.read_text()
        assert lab.exec("p", "hostname").stdout.strip() == "p"
        # the lab's machines served by its shared runc shims (about 2.8 MiB a machine less), where the engine can
        shims = _shared_as_sharded(client.containers.list(filters={"label": f"testbed.lab={ctx.lab}"}))

        # the fabric restarts (its processes are killed): the agents are not its, and keep serving
        client.containers.get(ctx.plan.fabric.container).restart(timeout=0)
        agent.wait_ready(state.run_dir(ctx.lab) / ctx.plan.fabric.name)
        assert _agent_pid(c) == pid
        assert agent.call(state.run_dir(ctx.lab) / node.name, "ping")["node"] == node.name

        # its agent dies: the node stops, seen by the fabric that started after the agent did
        os.kill(pid, signal.SIGKILL)
        assert _state(c) in ("exited", "replaced")
        labs.up(topology, **quiet)
        c = client.containers.get(node.container)
        assert _agent_pid(c) != pid
        assert lab.exec("p", "hostname").stdout.strip() == "p"
        assert _phase(lab) == "ready", lab.status()["reasons"]  # once its agent beats again
        # the restarted fabric and the new node joined their shards' shims (a shard left empty ended with its last)
        shims |= _shared_as_sharded(client.containers.list(filters={"label": f"testbed.lab={ctx.lab}"}))
    finally:
        labs.down(ctx.lab, **quiet)
    # and the shim ends with the lab's last machine
    assert not any(_alive(shim) for shim in shims)
