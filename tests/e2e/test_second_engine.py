"""A second Docker engine on this machine, isolated as a second host is (scripts/second-engine.sh, also the
fixture for multi-host tests): reached only over TCP on its own veth LAN, with its own network, mount and PID
namespaces and data root. A Provider for its endpoint is the one way to it: the node image goes there through
the two engines' APIs, and a container it runs lives in its namespaces, not this machine's."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from testbed import state
from testbed.runtime.machines import Provider

SCRIPT = Path(__file__).parents[2] / "scripts" / "second-engine.sh"
NAME = "tbe2e2"


@pytest.fixture(scope="module")
def engine():
    up = subprocess.run(["bash", str(SCRIPT), "up", NAME], capture_output=True, text=True, timeout=120,
                        check=False)
    assert up.returncode == 0, up.stderr
    try:
        yield up.stdout.strip()
    finally:  # the last test took it down already, unless it failed first
        subprocess.run(["bash", str(SCRIPT), "down", NAME], capture_output=True, timeout=120, check=False)


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False).stdout


def test_the_second_engine_is_another_host_reached_over_its_lan(engine, tmp_path):
    assert engine == "tcp://198.18.0.2:2375"
    here, there = Provider(), Provider(endpoint=engine)
    assert there.client.info()["ID"] != here.client.info()["ID"]  # its own /etc/docker
    assert there.client.info()["DockerRootDir"] == "/var/lib/docker"  # its own, bind-mounted in its namespace
    assert not there.machines() and not there.client.containers.list(all=True)
    # its namespace holds the LAN and nothing else: no route out of the machine, no default route
    assert _ip("-n", NAME, "-4", "route").split("\n")[0].startswith("198.18.0.0/30 dev lan0")
    assert "default" not in _ip("-n", NAME, "route")
    # an image goes there through the two APIs (`make bench images` times the node image's copy)
    empty = tmp_path / "empty.tar"
    subprocess.run(["tar", "-cf", str(empty), "--files-from", "/dev/null"], check=True)
    here.client.api.import_image(src=str(empty), repository="testbed-e2e-tiny", tag="1")
    try:
        assert here.copy_image_to(there, say=lambda _: None, ref="testbed-e2e-tiny:1")
        assert there.client.images.get("testbed-e2e-tiny:1")
        assert not here.copy_image_to(there, say=lambda _: None, ref="testbed-e2e-tiny:1")  # there now
    finally:
        here.client.images.remove("testbed-e2e-tiny:1", force=True)


def test_a_lab_on_an_engine_elsewhere_is_refused_with_what_to_do(engine):
    """Until labs span hosts, `up` needs the engine on this machine: DOCKER_HOST elsewhere is refused (exit 4),
    naming the engine and how to go back, with nothing made."""
    root = SCRIPT.parents[1]
    got = subprocess.run([sys.executable, "-m", "testbed", "up", "topologies/default.yaml", "--name", "e2e-remote"],
                         capture_output=True, text=True, cwd=root, env={**os.environ, "DOCKER_HOST": engine},
                         timeout=120, check=False)
    assert got.returncode == 4, got.stderr
    assert f"the Docker engine at {engine} (DOCKER_HOST) is not on this machine" in got.stderr
    assert state.load("e2e-remote") is None
    assert not Provider(endpoint=engine).machines("e2e-remote")


def test_a_clash_is_refused_and_down_leaves_no_namespace_link_or_folder(engine):
    """Last in this module: it takes the module's engine down (twice: down is idempotent)."""
    clash = subprocess.run(["bash", str(SCRIPT), "up", "tbe2e4"], capture_output=True, text=True, timeout=60,
                           check=False)  # the same LAN as the running one
    assert clash.returncode == 2 and "already used" in clash.stderr
    assert not Path("/var/lib/testbed-engines/tbe2e4").exists()
    for _ in range(2):
        done = subprocess.run(["bash", str(SCRIPT), "down", NAME], capture_output=True, timeout=120, check=False)
        assert done.returncode == 0
    assert NAME not in _ip("netns", "list") and f"{NAME}-lan" not in _ip("link")
    assert not Path(f"/run/testbed-engines/{NAME}").exists()
    assert not Path(f"/var/lib/testbed-engines/{NAME}").exists()
