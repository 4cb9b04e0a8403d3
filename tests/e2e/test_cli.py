"""The command line as a user meets it: exit codes, --json, errors that create nothing."""

import json
import subprocess
import sys
from pathlib import Path

import leftovers
import pytest

ROOT = Path(__file__).parents[2]
BAD = ROOT / "tests/unit/bad"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "testbed.cli", *args], capture_output=True, text=True,
                          check=False, cwd=ROOT)


@pytest.mark.parametrize("bad", ["overlap.yaml", "manifest-node-name.yaml", "manifest-port.yaml"])
def test_bad_topology_exits_2_names_the_problem_and_creates_nothing(bad):
    result = run_cli("up", str(BAD / bad))
    assert result.returncode == 2
    expected = (BAD / bad).read_text().splitlines()[0].removeprefix("# error: ")
    assert expected in result.stderr
    assert "nothing was created" in result.stderr
    assert leftovers.of("lab") == []


def test_missing_topology_file_exits_3():
    assert run_cli("up", "no/such/file.yaml").returncode == 3


@pytest.mark.topology("tests/e2e/topology.yaml")
def test_status_json_and_list(testbed_lab):
    data = json.loads(run_cli("status", "--lab", testbed_lab.name, "--json").stdout)
    assert [n["name"] for n in data["nodes"]] == ["node1", "node2", "node3"]
    assert {p["name"] for p in data["pods"]} >= {"a1", "a2", "b", "c", "o1"}
    assert testbed_lab.name in {r["name"] for r in json.loads(run_cli("list", "--json").stdout)}
    human = run_cli("status", "--lab", testbed_lab.name)
    assert human.returncode == 0 and "a1" in human.stdout


@pytest.mark.topology("tests/e2e/topology.yaml")
def test_exec_passes_output_and_exit_code_through(testbed_lab):
    result = run_cli("exec", "--lab", testbed_lab.name, "default/a1", "--", "sh", "-c", "hostname; exit 7")
    assert result.returncode == 7
    assert result.stdout.strip() == "a1"
    assert run_cli("exec", "--lab", testbed_lab.name, "default/ghost", "--", "true").returncode == 3


def test_down_of_an_unknown_lab_is_not_an_error():
    result = run_cli("down", "never-was")
    assert result.returncode == 0 and "nothing to remove" in result.stderr


def test_no_privileged_anywhere_in_the_code():
    import re

    asks = re.compile(r"privileged\s*=\s*True|-{2}privileged|\"Privileged\"\s*:\s*True")
    assert [p for p in (ROOT / "testbed").rglob("*.py") if asks.search(p.read_text())] == []


@pytest.mark.parametrize("bad", sorted(BAD.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_bad_input_creates_nothing(bad):
    from testbed import lab
    from testbed.errors import InvalidInput

    with pytest.raises(InvalidInput):
        lab.up(bad, say=lambda _: None)
    assert leftovers.of("lab") == []


@pytest.mark.topology("tests/e2e/topology.yaml")
def test_interactive_exec_gets_a_terminal_in_the_pod(testbed_lab):
    import shutil

    if not shutil.which("script"):
        pytest.skip("util-linux `script` is not installed")
    inner = "sh -c 'test -t 0 && echo terminal; hostname'"
    cmd = f"{sys.executable} -m testbed.cli exec --lab {testbed_lab.name} -it default/b -- {inner}"
    result = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True, check=False,
                            cwd=ROOT, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout
    lines = result.stdout.replace("\r", "").split()
    assert lines == ["terminal", "b"]


def test_ambiguous_lab_is_a_usage_error(testbed_labs):
    from pathlib import Path

    testbed_labs.get(Path(__file__).parent / "topology.yaml")
    testbed_labs.get(Path(__file__).parent / "second.yaml")
    result = run_cli("status")
    assert result.returncode == 2 and "pass --lab" in result.stderr
