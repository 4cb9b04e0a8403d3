"""Every test sees its own `testbed use` setting: the user's current lab must not pick the lab a test acts on.

`make test` runs the suite on two xdist workers (`--dist loadgroup`). A lab is one worker's alone: every test
that touches a lab is put in that lab's group, so two workers never bring up, change or remove the same lab.
Tests marked `serial` change what every lab shares (the node image's tag) and run afterwards, on their own."""

import os
import tempfile

import pytest

os.environ["TESTBED_CONFIG_DIR"] = tempfile.mkdtemp(prefix="testbed-config-")

TOPOLOGY = "lab:tests/e2e/topology.yaml"
# files whose tests reach labs other than through their topology marker or the shared lab fixtures: the
# topology lab's second lab (second.yaml) and e2e-single are brought up by several of these files
FILES = {"test_cli.py": TOPOLOGY, "test_labs.py": TOPOLOGY, "test_lifecycle.py": TOPOLOGY,
         "test_hardening.py": TOPOLOGY, "test_gateway.py": "lab:tests/e2e/edge.yaml"}
SHARED = ("services", "routed", "modes")  # tests/e2e/conftest.py's session labs


def group(item: pytest.Item) -> str:
    path = item.nodeid.split("::")[0]
    if (fixed := FILES.get(path.rsplit("/", 1)[-1])) is not None:
        return fixed
    if (marker := item.get_closest_marker("topology")) is not None:
        return f"lab:{marker.args[0]}"
    return next((f"lab:{name}" for name in SHARED if name in item.fixturenames), path)


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.xdist_group(group(item)))
