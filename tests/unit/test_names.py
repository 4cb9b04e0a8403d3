"""Lab names reach paths (state, run folder, netns), so every way a name comes in is checked before any path is
made from it. Run in a sandboxed state and run folder: a failure here must not delete anything real."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from testbed import errors, lab, state
from testbed.errors import InvalidInput

BAD_NAMES = ["..", ".", "/etc", "a/b", "../x", "x/..", "UPPER", "-x", "x" * 21, "a b", "", "\0"]


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    env = {"TESTBED_STATE_DIR": str(tmp_path / "state"), "TESTBED_RUN_DIR": str(tmp_path / "run")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    # what a wrong deletion would hit: a file beside the run folder, and another lab's sockets inside it
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "keep").write_text("x")
    (tmp_path / "run" / "other").mkdir(parents=True)
    (tmp_path / "run" / "other" / "agent.sock").write_text("x")
    return tmp_path


def _intact(root: Path) -> bool:
    return (root / "victim" / "keep").exists() and (root / "run" / "other" / "agent.sock").exists()


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "testbed", *args], capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_the_library_refuses_a_bad_name_before_any_path(sandbox, name):
    for call in (lambda: lab.down(name), lambda: state.load(name), lambda: state.remove_run_dir(name)):
        with pytest.raises(InvalidInput, match="invalid lab name"):
            call()
    assert _intact(sandbox)


@pytest.mark.parametrize("name", ["/../../..{victim}", "..", ".", "/etc", "../run/other"], ids=repr)
def test_down_refuses_path_like_names(sandbox, name):
    result = _cli("down", name.format(victim=sandbox / "victim"))
    assert result.returncode == 2, result.stderr
    assert "invalid lab name" in result.stderr
    assert _intact(sandbox)


def test_names_from_the_environment_and_lab_option_are_checked_too(sandbox):
    by_env = _cli("down", env={"TESTBED_LAB": f"/../../..{sandbox / 'victim'}"})
    assert by_env.returncode == 2 and "$TESTBED_LAB: invalid lab name" in by_env.stderr
    assert _cli("status", "--lab", "..").returncode == 2
    assert _intact(sandbox)


def test_a_run_folder_that_leads_elsewhere_is_refused(sandbox):
    (sandbox / "run" / "evil").symlink_to(sandbox / "victim")
    with pytest.raises(errors.TestbedError, match="refusing to touch"):
        state.remove_run_dir("evil")
    assert _intact(sandbox)


def test_names_found_on_the_machine_that_are_not_lab_names_are_ignored(sandbox):
    (sandbox / "state" / "..weird").mkdir(parents=True)
    (sandbox / "state" / "..weird" / "state.json").write_text("{}")
    assert state.names() == []


def test_down_with_no_lab_at_all_is_not_an_error(sandbox):
    result = _cli("down")
    assert result.returncode == 0 and "nothing to remove" in result.stderr
    assert _intact(sandbox)
