"""The command line as a user meets it: exit codes, --json, errors that create nothing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import leftovers
import pytest
from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

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
    inner = "sh -c 'test -t 0 && echo terminal; tty; stty size; hostname; exit 3'"
    cmd = f"stty rows 33 cols 101; {sys.executable} -m testbed.cli exec --lab {testbed_lab.name} -it default/b -- " \
          f"{inner}"
    result = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True, check=False,
                            cwd=ROOT, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 3, result.stdout
    lines = result.stdout.replace("\r", "").splitlines()
    assert lines[-4:-3] == ["terminal"] and lines[-3].startswith("/dev/pts/"), lines  # a terminal of its own
    assert lines[-2:] == ["33 101", "b"]  # the size of the caller's window


def test_ambiguous_lab_is_a_usage_error(testbed_labs):
    from pathlib import Path

    testbed_labs.get(Path(__file__).parent / "topology.yaml")
    testbed_labs.get(Path(__file__).parent / "second.yaml")
    result = run_cli("status")
    assert result.returncode == 2 and "pass --lab" in result.stderr and "testbed use NAME" in result.stderr
    down = run_cli("down")
    assert down.returncode == 2 and "testbed down NAME" in down.stderr and "--lab" not in down.stderr


def test_use_chooses_the_lab_verbs_act_on_and_says_so(testbed_labs):
    first = testbed_labs.get(Path(__file__).parent / "topology.yaml")
    testbed_labs.get(Path(__file__).parent / "second.yaml")
    try:
        assert run_cli("use", "no-such-lab").returncode == 3
        assert run_cli("use", first.name).returncode == 0
        assert run_cli("use").stdout.strip() == first.name
        result = run_cli("status", "--json")
        assert result.returncode == 0 and json.loads(result.stdout)["name"] == first.name
        assert f"lab {first.name} (the current lab" in result.stderr
        listed = {r["name"]: r["current"] for r in json.loads(run_cli("list", "--json").stdout)}
        assert listed[first.name] and not listed["e2e-second"]
        named = run_cli("status", "--lab", "e2e-second", "--json")
        assert json.loads(named.stdout)["name"] == "e2e-second" and "current lab" not in named.stderr
    finally:
        run_cli("use", "--clear")
    assert run_cli("use").returncode == 3


@pytest.mark.topology("tests/e2e/topology.yaml")
def test_a_probe_error_prints_its_reason(testbed_lab):
    result = run_cli("probe", "--lab", testbed_lab.name, "default/a1", "no-such-name.invalid:80")
    assert result.returncode == 1
    assert ": error (" in result.stdout and "ms" in result.stdout, result.stdout


@pytest.mark.topology("tests/e2e/topology.yaml")
def test_apply_of_what_the_api_server_refuses_exits_2_and_changes_nothing(testbed_lab, tmp_path):
    before = testbed_lab.plan.allocations()
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: fine}\nspec: {containers: [{name: c}]}\n---\n"
                   "apiVersion: v1\nkind: Service\nmetadata: {name: 9lives}\nspec: {ports: [{port: 80}]}\n")
    result = run_cli("apply", "--lab", testbed_lab.name, "-f", str(bad))
    assert result.returncode == 2
    assert f"{bad}:8: metadata.name: '9lives' is not a DNS-1035 label" in result.stderr
    assert testbed_lab.plan.allocations() == before


@pytest.mark.topology("tests/e2e/topology.yaml")
def test_delete_needs_only_kind_namespace_and_name_and_refuses_builtin_namespaces(testbed_lab, tmp_path):
    made = tmp_path / "made.yaml"
    made.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: doomed}\nspec: {nodeName: node1, containers: "
                    "[{name: c}]}\n")
    assert run_cli("apply", "--lab", testbed_lab.name, "-f", str(made)).returncode == 0
    # the same object, with a spec the API server would refuse, and one that is not there
    stale = tmp_path / "stale.yaml"
    stale.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: doomed}\nspec: {containers: 7}\n---\n"
                     "apiVersion: v1\nkind: Service\nmetadata: {name: never, namespace: other}\n")
    result = run_cli("delete", "--lab", testbed_lab.name, "-f", str(stale))
    assert result.returncode == 3 and "Service other/never" in result.stderr
    assert "doomed" not in {p.name for p in testbed_lab.plan.pods}
    system = tmp_path / "system.yaml"
    system.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: kube-system}\n")
    refused = run_cli("delete", "--lab", testbed_lab.name, "-f", str(system))
    assert refused.returncode == 2
    assert f"{system}:3: metadata.name: namespace 'kube-system' may not be deleted" in refused.stderr
    assert any(p.namespace == "kube-system" for p in testbed_lab.plan.pods)


@pytest.mark.topology("tests/e2e/topology.yaml")
def test_apply_and_delete_are_served_by_the_lab_controller_unless_told_otherwise(testbed_lab, tmp_path):
    """The lab's controller does an apply (control/api.py); the file keeps the name the user typed, relative to
    the command's folder; TESTBED_LOCAL has the command do it itself. Either way the pod answers."""
    from testbed import events, state

    name = testbed_lab.name
    (tmp_path / "served.yaml").write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: served}\n"
                                          "spec: {containers: [{name: c, ports: [{containerPort: 8080}]}]}\n")

    def testbed(*args: str, local: bool = False) -> subprocess.CompletedProcess:
        env = {**os.environ, **({"TESTBED_LOCAL": "1"} if local else {})}
        return subprocess.run([sys.executable, "-m", "testbed", *args, "--lab", name, "-f", "served.yaml"],
                              capture_output=True, text=True, check=False, cwd=tmp_path, env=env)

    def started_by() -> int:
        return next(e for e in reversed(events.read(name)) if e["reason"] == "Started")["pid"]

    controller = _serving(name)
    assert controller, "the lab's controller does not serve"
    assert testbed("apply").returncode == 0 and started_by() == controller
    assert {"served.yaml"} == {m["file"] for m in state.load(name).manifests if "served" in str(m["data"])}
    assert testbed_lab.probe("a1", f"{testbed_lab.pod('default/served').ipv4}:8080")["result"] == "connected"
    deleted = testbed("delete", local=True)
    assert deleted.returncode == 0, deleted.stderr
    assert started_by() not in (controller, 0) and "served" not in {p.name for p in testbed_lab.plan.pods}


@retry(retry=retry_if_result(lambda pid: not pid), stop=stop_after_delay(15), wait=wait_fixed(0.1),
       retry_error_callback=lambda state: state.outcome.result())
def _serving(name: str) -> int | None:
    """The controller's pid once it listens for the command line (it starts after `up` returns)."""
    from testbed import state
    from testbed.runtime import readiness

    return readiness.running(name) if (state.run_dir(name) / "api.sock").exists() else None
