"""The launcher of containerd's runc shim (scripts/engine/containerd-shim-runc-v2), run as containerd runs it: in a
container's bundle, ahead of the real shim on the PATH, which here records what it was given."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

LAUNCHER = Path(__file__).resolve().parents[2] / "scripts" / "engine" / "containerd-shim-runc-v2"
ARGS = ["-namespace", "moby", "-address", "/run/containerd.sock", "-id", "abc"]
TOOLS = ("cp",)  # the recording shim's: the launcher runs shell built-ins only
REAL = """#!/bin/sh
echo "$@" > called
cp config.json seen.json
"""


def _spec(env: list[str], **extra: object) -> str:
    return json.dumps({"ociVersion": "1.0.2", "process": {"env": env, "args": ["sleep", "infinity"]}, **extra})


def _run(tmp_path: Path, spec: str, *args: str, real: bool = True) -> subprocess.CompletedProcess[str]:
    launcher, shim, bundle = tmp_path / "launcher", tmp_path / "real", tmp_path / "bundle"
    for d in (launcher, shim, bundle):
        d.mkdir(exist_ok=True)
    (launcher / LAUNCHER.name).write_text(LAUNCHER.read_text())
    (launcher / LAUNCHER.name).chmod(0o755)
    if real:
        (shim / LAUNCHER.name).write_text(REAL)
        (shim / LAUNCHER.name).chmod(0o755)
    for tool in TOOLS:
        (shim / tool).symlink_to(shutil.which(tool) or tool)
    (bundle / "config.json").write_text(spec)
    env = {**os.environ, "PATH": f"{launcher}:{shim}"}
    return subprocess.run([str(launcher / LAUNCHER.name), *args], cwd=bundle, env=env, capture_output=True,
                          text=True, timeout=10)


def test_a_testbed_machine_is_put_in_its_labs_group_and_the_real_shim_runs_with_the_same_arguments(tmp_path: Path):
    out = _run(tmp_path, _spec(["PATH=/bin", "TESTBED_LAB=demo", "TESTBED_SHIM_GROUP=testbed-demo-1a2b3c4d"]),
               *ARGS, "start")
    assert out.returncode == 0, out.stderr
    seen = json.loads((tmp_path / "bundle" / "seen.json").read_text())
    assert seen["annotations"] == {"io.containerd.runc.v2.group": "testbed-demo-1a2b3c4d"}
    assert seen["process"]["args"] == ["sleep", "infinity"] and seen["ociVersion"] == "1.0.2"
    assert (tmp_path / "bundle" / "called").read_text().split() == [*ARGS, "start"]


@pytest.mark.parametrize("spec", [
    _spec(["PATH=/bin", "HOSTNAME=web"]),  # not testbed's: untouched
    _spec(["TESTBED_SHIM_GROUP=testbed-demo-1"], annotations={"io.containerd.runc.v2.group": "engine"}),  # Docker 24+
    json.dumps(json.loads(_spec(["TESTBED_SHIM_GROUP=testbed-demo-1"])), indent=2),  # not one line: not read
    _spec(["TESTBED_SHIM_GROUP=testbed-demo-1\\\",\\\"x"]),  # a group that is not a plain name
])
def test_any_other_container_is_left_as_the_engine_wrote_it(tmp_path: Path, spec: str):
    out = _run(tmp_path, spec, *ARGS, "start")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "bundle" / "seen.json").read_text() == spec


def test_only_start_reads_the_spec(tmp_path: Path):
    spec = _spec(["TESTBED_SHIM_GROUP=testbed-demo-1"])
    out = _run(tmp_path, spec, *ARGS, "delete")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "bundle" / "seen.json").read_text() == spec
    assert (tmp_path / "bundle" / "called").read_text().split()[-1] == "delete"


def test_without_a_real_shim_on_the_path_it_says_so(tmp_path: Path):
    out = _run(tmp_path, _spec([]), *ARGS, "start", real=False)
    assert out.returncode == 127 and "no shim on PATH" in out.stderr
