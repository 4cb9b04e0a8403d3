"""Which engine a Provider talks to, picked as the docker CLI picks it."""

import hashlib
import json

import pytest

from testbed.errors import EnvironmentProblem
from testbed.runtime import engines


def _context(home, name: str, host: str, tls: bool = False, skip_verify: bool = False) -> None:
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = home / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({"Name": name, "Endpoints": {"docker": {
        "Host": host, "SkipTLSVerify": skip_verify}}}))
    if tls:
        folder = home / "contexts" / "tls" / digest / "docker"
        folder.mkdir(parents=True)
        for f in ("ca.pem", "cert.pem", "key.pem"):
            (folder / f).write_text("x")


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    return tmp_path


def test_nothing_set_is_the_local_socket(home):
    assert engines.resolve(env={}) == engines.Endpoint(engines.LOCAL)


def test_docker_host_wins_over_the_current_context(home):
    _context(home, "lab2", "tcp://198.18.0.2:2375")
    (home / "config.json").write_text(json.dumps({"currentContext": "lab2"}))
    got = engines.resolve(env={"DOCKER_HOST": "tcp://192.0.2.7:2376", "DOCKER_TLS_VERIFY": "1",
                               "DOCKER_CERT_PATH": "/certs"})
    assert (got.host, got.tls, got.source) == ("tcp://192.0.2.7:2376", "/certs", "DOCKER_HOST")
    assert engines.resolve(env={}).host == "tcp://198.18.0.2:2375"  # the current context, without DOCKER_HOST


def test_docker_context_names_one_and_its_tls_folder_is_used(home):
    _context(home, "secure", "tcp://198.18.0.6:2376", tls=True)
    _context(home, "insecure", "tcp://198.18.0.10:2376", tls=True, skip_verify=True)
    got = engines.resolve(env={"DOCKER_CONTEXT": "secure"})
    assert got.host == "tcp://198.18.0.6:2376" and got.tls and got.tls.endswith("/docker")
    assert engines.resolve("context:insecure").tls is None
    assert engines.resolve(env={"DOCKER_CONTEXT": "default"}).host == engines.LOCAL


def test_an_unknown_context_or_scheme_is_a_clear_error(home):
    with pytest.raises(EnvironmentProblem, match="no docker context 'nope'"):
        engines.resolve(env={"DOCKER_CONTEXT": "nope"})
    with pytest.raises(EnvironmentProblem, match="not unix://, tcp:// or ssh://"):
        engines.resolve("http://198.18.0.2:2375")
    assert engines.resolve("ssh://ops@198.18.0.2").host == "ssh://ops@198.18.0.2"


def test_only_an_engine_on_this_machine_is_local():
    assert engines.Endpoint(engines.LOCAL).local and engines.Endpoint("tcp://127.0.0.1:2375").local
    assert not engines.Endpoint("tcp://198.18.0.2:2375").local
    assert not engines.Endpoint("ssh://ops@198.18.0.2").local
