import policylab
import pytest
import routedlab
import svclab

from testbed.pytest_plugin import Lab


def curl(lab: Lab, pod: str, url: str) -> str:
    """The body an HTTP GET from inside pod returns; fails the test on any transport error."""
    result = lab.exec(pod, ["curl", "-sS", "--max-time", "5", "-g", url])
    assert result.exit_code == 0, f"curl {url} from {pod}: {result.stderr}"
    return result.stdout


def url(ip: str, port: int, path: str) -> str:
    return f"http://[{ip}]:{port}{path}" if ":" in ip else f"http://{ip}:{port}{path}"


@pytest.fixture
def lab(testbed_lab: Lab) -> Lab:
    return testbed_lab


@pytest.fixture(scope="session")
def services(tmp_path_factory, testbed_labs):
    """The Services lab, brought up (or switched) to a kube-proxy mode; one for the session."""
    folder = tmp_path_factory.mktemp("svc")
    yield lambda mode: svclab.bring_up(folder, mode)
    testbed_labs.adopt(svclab.NAME)  # removed with the session's other labs, all at once


@pytest.fixture(params=["nftables", "iptables"])
def svc(request, services) -> Lab:
    return services(request.param)


@pytest.fixture(scope="session")
def routed(tmp_path_factory, testbed_labs):
    """The routed lab, brought up (or switched) to a pod network mode; one for the session."""
    folder = tmp_path_factory.mktemp("routed")
    yield lambda mode, nat=True: routedlab.bring_up(folder, mode, nat)
    testbed_labs.adopt(routedlab.NAME)


@pytest.fixture(scope="session")
def modes(tmp_path_factory, testbed_labs):
    """The NetworkPolicy lab (the upstream x, y, z model) in a pod network and a kube-proxy mode."""
    folder = tmp_path_factory.mktemp("pol")
    yield lambda network, proxy: policylab.bring_up(folder, network, proxy)
    testbed_labs.adopt(policylab.NAME)
