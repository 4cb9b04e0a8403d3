"""`testbed cni test`, the conformance battery, on a running lab: it passes against testbed's own plugin and
against Debian's reference plugins, and against a deliberately broken plugin (tests/cni/broken: its result lies
about its address, its DEL leaks IPAM addresses) it fails, naming both. Nothing of the battery stays behind."""

import json
import subprocess
import sys
from pathlib import Path

import docker
import pytest

pytestmark = pytest.mark.topology("tests/e2e/topology.yaml")
BROKEN = Path(__file__).parents[1] / "cni" / "broken"


def battery(lab, *args: str) -> tuple[int, list[dict]]:
    done = subprocess.run([sys.executable, "-m", "testbed", "cni", "test", "--lab", lab.name, "--json", *args],
                          capture_output=True, text=True, timeout=300)
    return done.returncode, json.loads(done.stdout)


@pytest.mark.parametrize("preset", ["builtin", "reference"])
def test_the_battery_passes_on_the_builtin_and_reference_plugins(testbed_lab, preset):
    code, found = battery(testbed_lab, "--preset", preset)
    assert code == 0, [f for f in found if f["status"] != "pass"]
    assert {f["status"] for f in found} == {"pass"} and len(found) >= 10
    assert all(f["spec"] for f in found)


def test_a_broken_plugin_is_named_for_its_lie_and_its_leak(testbed_lab):
    code, found = battery(testbed_lab, str(BROKEN), str(BROKEN / "net.conflist"))
    failed = {f["check"]: f["detail"] for f in found if f["status"] == "fail"}
    assert code == 1
    assert "is not on eth0" in failed["ADD result matches the netns"]
    assert "addresses leak on DEL" in failed["DEL releases IPAM addresses"]
    for node in testbed_lab.plan.nodes[:2]:  # the battery leaves nothing in the nodes
        box = docker.from_env().containers.get(node.container)
        netns = box.exec_run(["ip", "netns", "list"]).output.decode()
        assert "cnitest" not in netns
        assert "cnitest0" not in box.exec_run(["ip", "-br", "link"]).output.decode()
