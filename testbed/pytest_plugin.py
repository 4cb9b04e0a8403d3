"""pytest plugin (registered through the `pytest11` entry point): real labs as fixtures.

    @pytest.mark.topology("topologies/default.yaml")   # or --testbed-topology / ini testbed_topology
    def test_cross_node(testbed_lab, pod_exec):
        ip = testbed_lab.pod("default/server").ipv4
        assert pod_exec("default/client", f"curl -s http://{ip}:8080/clientip").stdout.startswith(
            testbed_lab.pod("default/client").ipv4)

One lab per topology file per session, shared by every test that asks for it, removed at session end
(unless --testbed-keep).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import testinfra
from testinfra.backend.docker import DockerBackend
from testinfra.host import Host

from testbed import lab, state
from testbed.actions import each
from testbed.observe import status
from testbed.plan.cluster import Plan, PodPlan
from testbed.runtime import podexec


class Lab:
    """A running lab, as tests see it."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def plan(self) -> Plan:
        return lab.current_plan(self.name)[1]

    def pod(self, ref: str) -> PodPlan:
        return podexec.find(self.plan, ref)[1]

    def pods(self, namespace: str | None = None, **labels: str) -> list[PodPlan]:
        return [p for p in self.plan.pods if (namespace is None or p.namespace == namespace)
                and all(p.labels.get(k) == v for k, v in labels.items())]

    def exec(self, pod: str, command: str | list[str]) -> podexec.Result:
        cmd = ["sh", "-c", command] if isinstance(command, str) else command
        return podexec.run(self.plan, pod, cmd)

    def apply(self, path: str | Path) -> None:
        lab.apply(self.name, path, say=lambda _: None)

    def delete(self, path: str | Path) -> list[str]:
        return lab.delete(self.name, path, say=lambda _: None)

    def status(self) -> dict[str, Any]:
        return status.collect(self.name)

    def probe(self, source: str, target: str, protocol: str = "tcp", timeout: float = 2.0) -> dict[str, Any]:
        """One connection from a pod or machine: result (connected, refused, timeout), pod, client, ms."""
        from testbed.observe.probe import probe

        return probe(self.plan, source, target, protocol, timeout)

    def node_host(self, node: str) -> Host:
        return testinfra.get_host(f"docker://{self.plan.node(node).container}")

    def pod_host(self, ref: str) -> Host:
        container, pod = podexec.find(self.plan, ref)
        return Host(PodBackend(container, pod))


class PodBackend(DockerBackend):
    """testinfra's docker backend, with every command run inside the pod (podexec.wrap)."""

    NAME = "testbed-pod"

    def __init__(self, container: str, pod: PodPlan, **kwargs: Any) -> None:
        self.pod = pod
        super().__init__(container, **kwargs)

    def run(self, command: str, *args: str, **kwargs: Any) -> Any:
        cmd = self.get_command(command, *args)
        wrapped = " ".join(shlex.quote(part) for part in podexec.wrap(self.pod, ["/bin/sh", "-c", cmd]))
        out = self.run_local(f"docker exec {shlex.quote(self.name)} {wrapped}")
        out.command = self.encode(cmd)
        return out


class Labs:
    """The session's labs, one per topology file, made on first use."""

    def __init__(self, keep: bool) -> None:
        self.keep = keep
        self.up: dict[Path, Lab] = {}
        self.made: set[str] = set()

    def get(self, topology: str | Path) -> Lab:
        path = Path(topology).resolve()
        if path not in self.up:
            name = lab.load(path).topology.name
            # a lab that was up before the session (`make up`) is re-synced, and left up; one the session makes
            # is the session's before its `up` starts, so one that fails halfway is removed at the end too
            if state.load(name) is None:
                self.made.add(name)
            ctx = lab.up(path, say=lambda _: None)
            self.up[path] = Lab(ctx.lab)
        return self.up[path]

    def adopt(self, name: str) -> None:
        """A lab the session made some other way, removed with the session's own at its end."""
        self.made.add(name)

    def close(self) -> None:
        """Every lab the session made, removed at once: each `down` mostly waits on the engine."""
        if not self.keep:
            each(lambda name: lab.down(name, say=lambda _: None), sorted(self.made))


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("testbed")
    group.addoption("--testbed-topology", help="topology file for the session lab")
    group.addoption("--testbed-keep", action="store_true", help="leave labs up after the session")
    parser.addini("testbed_topology", "topology file for the session lab", default="topologies/default.yaml")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "topology(path): the topology file this test's lab is built from")


@pytest.fixture(scope="session")
def testbed_labs(request: pytest.FixtureRequest) -> Iterator[Labs]:
    labs = Labs(request.config.getoption("--testbed-keep"))
    yield labs
    labs.close()


@pytest.fixture
def testbed_lab(request: pytest.FixtureRequest, testbed_labs: Labs) -> Lab:
    marker = request.node.get_closest_marker("topology")
    path = marker.args[0] if marker else (request.config.getoption("--testbed-topology")
                                          or request.config.getini("testbed_topology"))
    if not Path(path).is_absolute():
        path = Path(request.config.rootpath) / path
    return testbed_labs.get(path)


@pytest.fixture
def pod_exec(testbed_lab: Lab) -> Callable[[str, str | list[str]], podexec.Result]:
    return testbed_lab.exec


@pytest.fixture
def probe(testbed_lab: Lab) -> Callable[..., dict[str, Any]]:
    """testbed_lab.probe: `probe("default/client", "svc/default/web:80")["result"] == "connected"`."""
    return testbed_lab.probe


@pytest.fixture
def node_host(testbed_lab: Lab) -> Callable[[str], Host]:
    return testbed_lab.node_host


@pytest.fixture
def pod_host(testbed_lab: Lab) -> Callable[[str], Host]:
    return testbed_lab.pod_host


class Faults:
    """`testbed fault` for a test: inject (with --for and --measure), list, clear; what the test left is
    cleared when it ends."""

    def __init__(self, lab_name: str) -> None:
        self.lab = lab_name

    def inject(self, kind: str, *, lasts: float | None = None, measure: dict[str, Any] | None = None,
               timeout: float = 60.0, **args: Any) -> dict[str, Any]:
        """e.g. inject("node-stop", node="node2", lasts=10, measure={"from": "default/client",
        "target": "svc/default/web:80"})["measure"]["outageSeconds"]."""
        from testbed.faults import session

        return session.run(self.lab, kind, args, lasts, measure, timeout)

    def list(self) -> list[dict[str, Any]]:
        from testbed import faults

        return faults.listing(self.lab)

    def clear(self, fault_id: str | None = None) -> list[dict[str, Any]]:
        from testbed import faults

        return faults.clear(self.lab, fault_id)


@pytest.fixture
def testbed_fault(testbed_lab: Lab) -> Iterator[Faults]:
    helper = Faults(testbed_lab.name)
    yield helper
    helper.clear()


@pytest.fixture
def testbed_scenario(testbed_lab: Lab) -> Callable[[str | Path], dict[str, Any]]:
    """Runs a scenario file on the lab: `assert testbed_scenario("node-loss.yaml")["ok"]`."""
    from testbed.faults import scenario

    return lambda path: scenario.run(str(path), testbed_lab.name)
