"""Labs side by side, `down` leaving nothing behind, and `down` after an `up` killed halfway."""

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

HERE = Path(__file__).parent


@pytest.mark.topology("tests/e2e/topology.yaml")
def test_two_labs_side_by_side(testbed_lab, testbed_labs):
    other = testbed_labs.get(HERE / "second.yaml")
    assert other.name != testbed_lab.name
    assert other.plan.underlay != testbed_lab.plan.underlay
    # both labs use 10.244.0.0/16 and each one's pods reach only their own lab
    x, y = other.pod("x"), other.pod("y")
    assert curl(other, "x", url(y.ipv4, 8080, "/clientip")).rsplit(":", 1)[0] == x.ipv4
    a1 = testbed_lab.pod("a1")
    assert x.ipv4 == a1.ipv4
    assert curl(other, "y", url(x.ipv4, 8080, "/hostname")) == "x"
    assert curl(testbed_lab, "b", url(a1.ipv4, 8080, "/hostname")) == "a1"


def test_down_leaves_nothing_and_is_idempotent():
    links_before = leftovers.host_links()
    ctx = labs.up(HERE / "single.yaml", say=lambda _: None)
    assert leftovers.of(ctx.lab)  # the check below can see what a lab makes
    assert labs.down(ctx.lab, say=lambda _: None) is True
    assert leftovers.of(ctx.lab) == []
    assert leftovers.host_links() == links_before
    assert labs.down(ctx.lab, say=lambda _: None) is False


@retry(retry=retry_if_result(lambda n: n == 0), stop=stop_after_delay(60), wait=wait_fixed(0.05))
def _containers_of(name: str) -> int:
    return len(docker.from_env().containers.list(all=True, filters={"label": f"testbed.lab={name}"},
                                                 ignore_removed=True))


def test_down_after_up_was_killed_halfway():
    cli = [sys.executable, "-m", "testbed.cli", "up", "-q", str(HERE / "crash.yaml")]
    proc = subprocess.Popen(cli, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _containers_of("e2e-crash")  # some of the lab exists: kill it mid-flight
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert leftovers.of("e2e-crash")
    down = subprocess.run([sys.executable, "-m", "testbed.cli", "down", "e2e-crash"], capture_output=True,
                          text=True, check=False)
    assert down.returncode == 0, down.stderr
    assert leftovers.of("e2e-crash") == []
