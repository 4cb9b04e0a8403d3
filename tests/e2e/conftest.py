import pytest
from svclab import NAME, bring_up

from testbed import lab as labs
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
def services(tmp_path_factory):
    """The Services lab, brought up (or switched) to a kube-proxy mode; one for the session."""
    folder = tmp_path_factory.mktemp("svc")
    yield lambda mode: bring_up(folder, mode)
    labs.down(NAME, say=lambda _: None)


@pytest.fixture(params=["nftables", "iptables"])
def svc(request, services) -> Lab:
    return services(request.param)
