"""testbed in other people's CI: the wheel, built here and installed into a fresh virtualenv outside this
repository by the GitHub Action's own steps (run in order by tests/actionrunner.py), brings a lab up from a
user's folder; a cross-node request and the README's pytest example run against it; the post use collects
diagnostics for a failed job and removes the lab; a second job loads the cached node image instead of building
it. Bad topologies fail the action's step with the file:line:field error and leave nothing up."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import docker
import pytest
import yaml
from actionrunner import ROOT, Runner, StepFailed

from testbed import state
from testbed.runtime import images

LAB = "gha"
pytestmark = pytest.mark.serial  # a test here untags the node image that every lab starts from


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)], check=True,
                   capture_output=True, timeout=300)
    (found,) = out.glob("testbed-*.whl")
    return found


@pytest.fixture(scope="module")
def user_repo(tmp_path_factory) -> Path:
    """A user's repository: the default topology renamed, its manifests, and the README's pytest example."""
    repo = tmp_path_factory.mktemp("user-repo")
    topo = yaml.safe_load((ROOT / "topologies" / "default.yaml").read_text())
    topo["name"] = LAB
    (repo / "topology.yaml").write_text(yaml.safe_dump(topo))
    shutil.copytree(ROOT / "topologies" / "manifests", repo / "manifests")
    readme = (ROOT / "README.md").read_text()
    example = re.search(r"## pytest plugin.*?```python\n(.*?)```", readme, re.S)
    assert example, "the README's pytest example is gone"
    (repo / "test_lab.py").write_text(example.group(1).replace("topologies/default.yaml", "topology.yaml"))
    return repo


@pytest.fixture(scope="module")
def runner(tmp_path_factory, user_repo) -> Runner:
    yield Runner(tmp_path_factory.mktemp("runner"), user_repo)
    subprocess.run([sys.executable, "-m", "testbed", "down", LAB], capture_output=True, check=False)


def test_the_action_brings_a_lab_up_from_a_wheel_and_collects_after_a_failed_job(runner, wheel, user_repo):
    outputs, _ = runner.run({"topology": "topology.yaml", "package": str(wheel)})
    venv = Path(outputs["venv"])
    assert ROOT not in venv.parents and (venv / "bin" / "testbed").exists()
    assert outputs["lab-name"] == LAB
    assert '"phase": "ready"' in Path(outputs["status-json"]).read_text()
    status = json.loads(Path(outputs["status-json"]).read_text())
    pods = {f"{p['namespace']}/{p['name']}": p for p in status["pods"]}
    client, db = pods["default/client"], pods["backend/db"]
    assert client["node"] != db["node"]
    got = subprocess.run([str(venv / "bin" / "testbed"), "exec", "--lab", LAB, "default/client", "--", "curl", "-s",
                          "--max-time", "5", f"http://{db['ips'][0]}:5432/clientip"], capture_output=True, text=True,
                         cwd=user_repo, check=False)
    assert got.returncode == 0 and got.stdout.startswith(client["ips"][0]), got.stderr
    tests = subprocess.run([str(venv / "bin" / "pytest"), "-q", "-p", "no:cacheprovider", "test_lab.py"],
                           capture_output=True, text=True, cwd=user_repo, timeout=600, check=False)
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert "2 passed" in tests.stdout
    (user_repo / "test_option.py").write_text("def test_lab_from_the_option(testbed_lab):\n"
                                              f"    assert testbed_lab.name == {LAB!r}\n")
    option = subprocess.run([str(venv / "bin" / "pytest"), "-q", "-p", "no:cacheprovider", "test_option.py",
                             "--testbed-topology", "topology.yaml"], capture_output=True, text=True, cwd=user_repo,
                            timeout=600, check=False)
    assert option.returncode == 0, option.stdout[-3000:]

    runner.run({"mode": "post", "job-status": "failure", "lab-name": LAB})
    collected = runner.home / "artifacts" / "testbed-diagnostics-test-1" / LAB
    assert (collected / "status.json").exists() and (collected / "routes.json").exists()
    assert (collected / "node1" / "container.log").exists()
    assert state.load(LAB) is None  # removed


def test_a_second_job_loads_the_cached_image_instead_of_building(runner, wheel):
    client = docker.from_env()
    cached = list((runner.home / "cache").glob("*/testbed-node-image.tar.gz"))
    assert cached, "the first job saved no image for the cache"
    client.images.remove(images.reference(), force=True)  # untagged: running labs keep their layers
    assert not images.present(client)
    runner.log = ""
    outputs, _ = runner.run({"topology": "topology.yaml", "package": str(wheel), "lab-name": LAB})
    assert images.present(client)
    assert "loading" in runner.log and "building" not in runner.log
    assert outputs["lab-name"] == LAB
    runner.run({"mode": "post", "job-status": "success", "lab-name": LAB}, job="second")
    assert not (runner.home / "artifacts" / "testbed-diagnostics-second-1").exists()  # nothing failed
    assert state.load(LAB) is None


def test_a_bad_topology_fails_the_step_with_file_line_and_field(runner, wheel, user_repo):
    with pytest.raises(StepFailed) as missing:
        runner.run({"topology": "nope.yaml", "package": str(wheel)})
    assert missing.value.code == 2 and "::error file=nope.yaml::no such topology file" in missing.value.log
    bad = user_repo / "bad.yaml"
    bad.write_text("apiVersion: testbed/v1alpha1\nkind: Topology\nname: gha-bad\nnodes: 2\nnetworking:\n"
                   "  mtu: 70000\n")
    runner.log = ""
    with pytest.raises(StepFailed) as invalid:
        runner.run({"topology": "bad.yaml", "package": str(wheel)})
    assert invalid.value.code == 2 and "bad.yaml:6: networking.mtu:" in invalid.value.log
    assert "already installed" in invalid.value.log  # the first use's virtualenv, same package
    assert state.load("gha-bad") is None


def test_images_load_refuses_what_is_not_the_current_image(tmp_path):
    text = tmp_path / "not-an-image"
    text.write_text("hello\n")
    got = subprocess.run([sys.executable, "-m", "testbed", "images", "load", str(text)], capture_output=True,
                         text=True, check=False)
    assert got.returncode == 2 and "not a saved image" in got.stderr
    other = tmp_path / "other.tar"
    manifest = tmp_path / "manifest.json"
    manifest.write_text('[{"Config": "x.json", "RepoTags": ["testbed-node:000000000000"], "Layers": []}]')
    subprocess.run(["tar", "-cf", str(other), "-C", str(tmp_path), "manifest.json"], check=True)
    got = subprocess.run([sys.executable, "-m", "testbed", "images", "load", str(other)], capture_output=True,
                         text=True, check=False)
    assert got.returncode == 2 and f"holds testbed-node:000000000000, not {images.reference()}" in got.stderr


def test_the_wheel_and_sdist_pass_twine_check(wheel):
    sdist_dir = wheel.parent / "sdist"
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--outdir", str(sdist_dir), str(ROOT)], check=True,
                   capture_output=True, timeout=300)
    got = subprocess.run([sys.executable, "-m", "twine", "check", str(wheel), *map(str, sdist_dir.glob("*"))],
                         capture_output=True, text=True, check=False)
    assert got.returncode == 0 and got.stdout.count("PASSED") == 2, got.stdout + got.stderr


def test_doctor_and_version_report_this_machine():
    got = subprocess.run([sys.executable, "-m", "testbed", "doctor", "--json"], capture_output=True, text=True,
                         check=False)
    report = json.loads(got.stdout)
    assert got.returncode == 0 and report["ok"]
    names = {c["name"]: c for c in report["checks"]}
    assert names["docker engine"]["ok"] and names["node image"]["ok"] and names["CONFIG_VXLAN"]["ok"]
    assert not names["CONFIG_IP_VS"]["required"]  # optional: a warning at most
    assert not names["shared shim"]["required"] and "shim" in names["shared shim"]["detail"]
    version = json.loads(subprocess.run([sys.executable, "-m", "testbed", "version", "--json"], capture_output=True,
                                        text=True, check=True).stdout)
    assert version["image"] == images.reference() and version["imagePresent"]


def test_prune_removes_superseded_images_only(tmp_path):
    client = docker.from_env()
    empty = tmp_path / "empty.tar"
    subprocess.run(["tar", "-cf", str(empty), "--files-from", "/dev/null"], check=True)
    client.api.import_image(src=str(empty), repository=images.REPOSITORY, tag="000000000000")
    got = subprocess.run([sys.executable, "-m", "testbed", "images", "prune"], capture_output=True, text=True,
                         check=False)
    assert got.returncode == 0 and "removed testbed-node:000000000000" in got.stdout
    assert images.present(client)  # the current one stays


def test_prune_removes_untagged_node_images_a_rebuild_leaves(tmp_path):
    """What a rebuild of the same tag leaves behind (`images build --force` while a container still uses the
    old image): an untagged node image (label testbed.image=node), which prune removes once nothing uses it."""
    client = docker.from_env()
    empty = tmp_path / "empty.tar"
    subprocess.run(["tar", "-cf", str(empty), "--files-from", "/dev/null"], check=True)
    for build in ("first", "second"):  # the second takes the tag from the first, which is left untagged
        client.api.import_image(src=str(empty), repository=images.REPOSITORY, tag="111111111111",
                                changes=["LABEL testbed.image=node", f"LABEL testbed.test={build}"])
    (old,) = client.images.list(filters={"label": "testbed.test=first"})
    assert old.tags == []
    got = subprocess.run([sys.executable, "-m", "testbed", "images", "prune"], capture_output=True, text=True,
                         check=False)
    assert got.returncode == 0 and f"removed untagged {old.short_id.removeprefix('sha256:')}" in got.stdout
    assert "removed testbed-node:111111111111" in got.stdout
    assert not client.images.list(filters={"label": "testbed.test"})
    assert images.present(client)
