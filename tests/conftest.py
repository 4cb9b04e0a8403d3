"""Every test sees its own `testbed use` setting: the user's current lab must not pick the lab a test acts on.

`make test` runs the suite on WORKERS xdist workers (two by default). A lab is one worker's alone: every test
that touches a lab is put in that lab's group, so two workers never bring up, change or remove the same lab.
Tests marked `serial` change what every lab shares (the node image's tag) and run afterwards, on their own."""

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

os.environ["TESTBED_CONFIG_DIR"] = tempfile.mkdtemp(prefix="testbed-config-")

TOPOLOGY = "lab:tests/e2e/topology.yaml"
# files whose tests reach labs other than through their topology marker or the shared lab fixtures: the
# topology lab's second lab (second.yaml) and e2e-single are brought up by several of these files
FILES = {"test_cli.py": TOPOLOGY, "test_labs.py": TOPOLOGY, "test_lifecycle.py": TOPOLOGY,
         "test_hardening.py": TOPOLOGY, "test_dns.py": TOPOLOGY, "test_gateway.py": "lab:tests/e2e/edge.yaml"}
SHARED = ("services", "routed", "modes")  # tests/e2e/conftest.py's session labs
GROUPS = "TESTBED_TEST_GROUPS"


def group(item: pytest.Item) -> str:
    path = item.nodeid.split("::")[0]
    if (fixed := FILES.get(path.rsplit("/", 1)[-1])) is not None:
        return fixed
    # before the file's topology marker: a test of the faults lab's file may drive the routed lab instead
    if (shared := next((name for name in SHARED if name in item.fixturenames), None)) is not None:
        return f"lab:{shared}"
    if (marker := item.get_closest_marker("topology")) is not None:
        return f"lab:{marker.args[0]}"
    return path


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "dist", "no") != "no" and not os.environ.get("PYTEST_XDIST_WORKER"):
        # the workers, started after this, write each test's group here as they collect
        os.environ[GROUPS] = os.path.join(tempfile.mkdtemp(prefix="testbed-groups-"), "groups.json")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    path, worker = os.environ.get(GROUPS), os.environ.get("PYTEST_XDIST_WORKER")
    if path and worker:
        Path(f"{path}.{worker}").write_text(json.dumps({item.nodeid: group(item) for item in items}))
        os.replace(f"{path}.{worker}", path)  # every worker collects the same tests: the last one stays


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadscope` with this suite's scopes: a lab's group is one scope, so one worker has it all. (xdist's
    own `loadgroup` reads markers through a node id that pytest 9 no longer lets a plugin change.)"""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByLab(LoadScopeScheduling):
        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:  # asked once every worker has collected
                self.groups = json.loads(Path(os.environ[GROUPS]).read_text())
            return self.groups.get(nodeid, nodeid.split("::")[0])

    return ByLab(config, log)
