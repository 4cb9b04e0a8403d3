"""Hardening with real labs: an immediate re-run after kill -9 converges, status is observed (a stopped node is
`degraded`), exec on a stopped node says how to heal, Ctrl-C says what it left, and checks against the machine
(the engine, container names, another file with the same lab name) come before anything is made."""

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import docker
import leftovers
import pytest
from conftest import curl, url
from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

from testbed import lab as labs
from testbed import state
from testbed.errors import InvalidInput
from testbed.pytest_plugin import Lab
from testbed.runtime import images, readiness

HERE = Path(__file__).parent
MANY = HERE / "manifests" / "many.yaml"
quiet = {"say": lambda _: None}


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "testbed", *args], capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})}, timeout=300)


def _sigint_default() -> None:
    """As in a terminal: a runner started in the background may pass SIGINT on ignored or blocked, and Python
    then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def popen(*args: str, python: tuple[str, ...] = (), env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *python, "-m", "testbed", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_sigint_default,
                            env={**os.environ, **(env or {})})


@retry(retry=retry_if_result(lambda n: n < 20), stop=stop_after_delay(60), wait=wait_fixed(0.05))
def _pods_made(container: str) -> int:
    """Pods whose netns exist on a node: the killed command is mid-way through creating them."""
    try:
        done = docker.from_env().containers.get(container).exec_run("sh -c 'ls /run/netns | wc -l'")
    except (docker.errors.NotFound, docker.errors.APIError):  # the node is being (re)made by the command
        return 0
    # an exec that races the node's restart ends with no output at all (CI): not counted, asked again
    return int(done.output) if done.exit_code == 0 and done.output.strip().isdigit() else 0


@retry(retry=retry_if_result(lambda n: n == 0), stop=stop_after_delay(60), wait=wait_fixed(0.05))
def _containers(name: str) -> int:
    return len(docker.from_env().containers.list(all=True, filters={"label": f"testbed.lab={name}"},
                                                 ignore_removed=True))


def test_an_immediate_rerun_after_kill_9_converges():
    name = "e2e-rerun"
    try:
        up = popen("up", "-q", str(HERE / "rerun.yaml"))
        _containers(name)
        up.send_signal(signal.SIGKILL)
        up.wait()
        again = cli("up", "-q", str(HERE / "rerun.yaml"))
        assert again.returncode == 0, again.stderr

        # the command doing the work itself, as it does when no controller answers (TESTBED_LOCAL)
        apply = popen("apply", "--lab", name, "-f", str(MANY), env={"TESTBED_LOCAL": "1"})
        _pods_made(f"{name}-node1")
        apply.send_signal(signal.SIGKILL)
        apply.wait()
        again = cli("apply", "--lab", name, "-f", str(MANY))  # while the agents still finish the killed sync
        assert again.returncode == 0, again.stderr
        lab = Lab(name)
        data = lab.status()
        assert data["phase"] == "ready", data["reasons"]
        replicas = lab.pods("default", app="many")
        assert len(replicas) == 160 and all(p["ready"] for p in data["pods"])
        for src, dst in random.Random(1).sample([(a, b) for a in replicas[:20] for b in replicas[-20:]
                                                 if a.node != b.node], 5):
            assert curl(lab, src.key, url(dst.ipv4, 8080, "/hostname")) == dst.name

        # served by the lab's controller: a command killed mid-way leaves the work to it, and no re-run is needed
        served = popen("delete", "--lab", name, "-f", str(MANY))
        assert _phase(name, "creating"), "the controller did not start the delete"
        served.send_signal(signal.SIGKILL)
        served.wait()
        assert _phase(name, "ready") and lab.pods("default", app="many") == []
        assert lab.status()["phase"] == "ready"
    finally:
        labs.down(name, **quiet)


@retry(retry=retry_if_result(lambda seen: not seen), stop=stop_after_delay(60), wait=wait_fixed(0.02),
       retry_error_callback=lambda state: state.outcome.result())
def _phase(name: str, phase: str) -> bool:
    st = state.load(name)
    return st is not None and st.phase == phase


def test_status_is_observed_and_up_heals_a_stopped_node():
    ctx = labs.up(HERE / "single.yaml", **quiet)
    lab, node = Lab(ctx.lab), ctx.plan.nodes[0]
    client = docker.from_env()
    try:
        assert lab.status()["phase"] == "ready"
        readiness.stop(ctx.lab)  # what status sees of a dead node, without the control plane healing it meanwhile
        client.containers.get(node.container).kill()
        data = lab.status()
        assert data["phase"] == "degraded"
        assert f"node {node.name}: container {node.container} is exited" in data["reasons"]
        assert "pod default/p: missing" in data["reasons"]
        assert {link["state"] for link in data["links"]} == {"missing"}
        assert "testbed up" in data["hint"]
        result = cli("exec", "--lab", ctx.lab, "p", "--", "true")
        assert result.returncode == 4
        assert "is exited; `testbed up` restarts it" in result.stderr and "Traceback" not in result.stderr

        # started again: the control plane brings its pods and links back, and `up` racing it leaves the same lab
        client.containers.get(node.container).start()
        labs.up(HERE / "single.yaml", **quiet)
        assert lab.status()["phase"] == "ready"
        assert lab.exec("p", "hostname").stdout.strip() == "p"
    finally:
        labs.down(ctx.lab, **quiet)


def test_another_file_with_a_running_labs_name_is_refused_unless_replace(tmp_path):
    source = (HERE / "single.yaml").read_text()
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text(source.replace("{name: p}", "{name: q}") + source.split("manifests:\n")[1])
    second.write_text(source)
    try:
        ctx = labs.up(first, **quiet)
        assert {p.name for p in ctx.plan.pods if p.namespace == "default"} == {"p", "q"}
        with pytest.raises(InvalidInput) as info:
            labs.up(second, **quiet)
        assert str(first) in str(info.value) and str(second) in str(info.value) and "--replace" in str(info.value)
        assert state.load(ctx.lab).topology_file == str(first)
        ctx = labs.up(second, replace=True, **quiet)  # what the file no longer has is removed
        assert [p.name for p in ctx.plan.pods if p.namespace == "default"] == ["p"]
        assert ctx.plan.node("node1") and Lab(ctx.lab).pod("p").ipv4.startswith("10.244.")
        assert cli("up", "-q", str(first)).returncode == 2
    finally:
        labs.down("e2e-single", **quiet)


def test_a_container_name_taken_by_another_container_is_found_before_anything_is_made(tmp_path):
    client = docker.from_env()
    topo = tmp_path / "clash.yaml"
    topo.write_text((HERE / "single.yaml").read_text().replace("e2e-single", "e2e-clash"))
    foreign = client.containers.create(images.reference(), name="e2e-clash-node1", network_mode="none")
    try:
        result = cli("up", str(topo))
        assert result.returncode == 2
        assert "container name e2e-clash-node1 is taken by a container testbed did not make" in result.stderr
        assert str(topo) in result.stderr
        assert leftovers.of("e2e-clash") == []
    finally:
        foreign.remove(force=True)


def test_no_engine_is_found_before_anything_is_recorded(tmp_path):
    result = cli("up", str(HERE / "single.yaml"), env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock",
                                                        "TESTBED_STATE_DIR": str(tmp_path / "state")})
    assert result.returncode == 4 and "no Docker engine is reachable" in result.stderr
    assert not list((tmp_path / "state").glob("*/state.json"))


def test_ctrl_c_exits_130_and_says_what_was_left():
    name = "e2e-rerun"
    try:
        # -X importtime reports each import as it ends: once click's is reported, the command is mid-imports
        early = popen("up", "-q", str(HERE / "rerun.yaml"), python=("-X", "importtime"))
        assert early.stderr is not None
        for line in early.stderr:
            if line.startswith("import time:") and line.split("|")[-1].strip() == "click":
                early.send_signal(signal.SIGINT)
                break
        else:
            pytest.fail("the command never imported click")
        err = early.stderr.read()
        early.wait(timeout=60)
        assert early.returncode == 130 and "Traceback" not in err
        # imports may end before the signal lands (a loaded machine reads the child's stderr late): then the
        # command's own handler answers; either way nothing was recorded
        assert "interrupted" in err.splitlines()[-1]
        assert state.load(name) is None
        labs.down(name, **quiet)

        up = popen("up", "-q", str(HERE / "rerun.yaml"))
        _containers(name)
        up.send_signal(signal.SIGINT)
        _, err = up.communicate(timeout=60)
        assert up.returncode == 130, err
        assert "Traceback" not in err and "Aborted" not in err
        assert f"lab {name} is partly made" in err and f"testbed down {name}" in err
        assert state.load(name).phase == "creating"
        assert cli("up", "-q", str(HERE / "rerun.yaml")).returncode == 0  # up finishes the job
        assert Lab(name).status()["phase"] == "ready"
    finally:
        labs.down(name, **quiet)
        assert leftovers.of(name) == []


def test_a_long_pod_name_gets_the_kubelets_63_character_hostname(tmp_path):
    name = "long-" + "x" * 95
    manifest = tmp_path / "long.yaml"
    manifest.write_text(f"{{apiVersion: v1, kind: Pod, metadata: {{name: {name}}}, spec: {{containers: "
                        "[{name: c, ports: [{containerPort: 80}]}]}}\n")
    ctx = labs.up(HERE / "single.yaml", **quiet)
    try:
        lab = Lab(ctx.lab)
        lab.apply(manifest)
        assert lab.exec(name, "hostname").stdout.strip() == name[:63]
        assert curl(lab, "p", url(lab.pod(name).ipv4, 80, "/hostname")) == name[:63]

        overlap = tmp_path / "overlap.yaml"
        overlap.write_text((HERE / "second.yaml").read_text().replace("e2e-second", "e2e-overlap")
                           + f"networking: {{underlayCIDR: {ctx.plan.underlay}}}\n")
        with pytest.raises(InvalidInput) as info:
            labs.up(overlap, **quiet)
        assert f"{overlap}:9: networking.underlayCIDR: {ctx.plan.underlay} overlaps the underlay" in str(info.value)
        assert "of lab e2e-single (from " in str(info.value)
    finally:
        labs.down(ctx.lab, **quiet)
