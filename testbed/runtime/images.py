"""The node image, built from Debian packages with no registry: mmdebstrap into a tarball, then `docker import`.

Tagged by a hash of its inputs, so it is rebuilt only when the package list or the build recipe change.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from importlib import resources

import docker
from docker.errors import ImageNotFound

from testbed.errors import EnvironmentProblem, TestbedError

REPOSITORY = "testbed-node"
SUITE = "bookworm"
RECIPE = 2  # bump when the build steps below change the result
MMDEBSTRAP_ARGS = ["--variant=apt", "--dpkgopt=path-exclude=/usr/share/man/*",
                   "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/locale/*"]
CHANGES = [
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    # the agent and its pyroute2 are bind-mounted here from the host's install, so code changes need no rebuild
    'ENV PYTHONPATH=/opt/testbed:/opt/testbed/lib',
    'ENV PYTHONDONTWRITEBYTECODE=1',
    'CMD ["tini", "-g", "--", "python3", "-m", "testbed.agent"]',
    'LABEL testbed.image=node',
]


def packages() -> list[str]:
    text = resources.files("testbed.images").joinpath("node.packages").read_text()
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def tag() -> str:
    raw = "\n".join([SUITE, str(RECIPE), *MMDEBSTRAP_ARGS, *CHANGES, *sorted(packages())])
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def reference() -> str:
    return f"{REPOSITORY}:{tag()}"


def present(client: docker.DockerClient) -> bool:
    try:
        client.images.get(reference())
        return True
    except ImageNotFound:
        return False


def check_buildable(client: docker.DockerClient) -> None:
    """Before a lab is recorded: the image is there, or it can be built here."""
    if not present(client) and not shutil.which("mmdebstrap"):
        raise EnvironmentProblem("the node image is missing and mmdebstrap is not installed to build it "
                                 "(apt-get install mmdebstrap; `make up` does it)")


def build(client: docker.DockerClient, say: Callable[[str], None] = print, force: bool = False) -> str:
    ref = reference()
    if present(client) and not force:
        say(f"image {ref} is up to date")
        return ref
    if not shutil.which("mmdebstrap"):
        raise EnvironmentProblem("mmdebstrap is not installed (apt-get install mmdebstrap; `make up` does it)")
    workdir = tempfile.mkdtemp(prefix="testbed-image-")
    tarball = os.path.join(workdir, "rootfs.tar")
    try:
        say(f"building {ref} from Debian {SUITE} packages with mmdebstrap (about 20 s)")
        cmd = ["mmdebstrap", *MMDEBSTRAP_ARGS, "--include=" + ",".join(packages()), SUITE, tarball]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise TestbedError(f"mmdebstrap failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        say(f"importing {ref}")
        client.api.import_image(src=tarball, repository=REPOSITORY, tag=tag(), changes=CHANGES)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(workdir)
    return ref
