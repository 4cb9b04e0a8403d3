"""The node image, built from Debian packages with no registry: mmdebstrap into a tarball, then `docker import`.

Tagged by a hash of its inputs, so it is rebuilt only when the package list or the build recipe change.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from testbed.errors import EnvironmentProblem, InvalidInput, NotFound, Problem, TestbedError

if TYPE_CHECKING:
    import docker

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


def present(client: docker.DockerClient, ref: str | None = None) -> bool:
    """Whether the engine has the image (default: the current node image)."""
    from docker.errors import ImageNotFound

    try:
        client.images.get(ref or reference())
        return True
    except ImageNotFound:
        return False


def check_buildable(client: docker.DockerClient) -> None:
    """Before a lab is recorded: the image is there, or it can be built here."""
    if not present(client) and not shutil.which("mmdebstrap"):
        raise EnvironmentProblem("the node image is missing and mmdebstrap is not installed to build it "
                                 "(apt-get install mmdebstrap; `make up` does it)")


def build(client: docker.DockerClient, say: Callable[[str], None] = print, force: bool = False) -> str:
    """With force, the image it replaces is removed once the new one holds the tag, unless a container
    still uses it (then `testbed images prune` removes it later)."""
    ref = reference()
    if present(client) and not force:
        say(f"image {ref} is up to date")
        return ref
    replaced = client.images.get(ref).id if present(client) else None
    if not shutil.which("mmdebstrap"):
        raise EnvironmentProblem("mmdebstrap is not installed (apt-get install mmdebstrap; `make up` does it)")
    workdir = tempfile.mkdtemp(prefix="testbed-image-")
    tarball = os.path.join(workdir, "rootfs.tar")
    try:
        say(f"building {ref} from Debian {SUITE} packages with mmdebstrap (about 40 s)")
        cmd = ["mmdebstrap", *MMDEBSTRAP_ARGS, "--include=" + ",".join(packages()), SUITE, tarball]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise TestbedError(f"mmdebstrap failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        say(f"importing {ref}")
        client.api.import_image(src=tarball, repository=REPOSITORY, tag=tag(), changes=CHANGES)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(workdir)
    if replaced and replaced != client.images.get(ref).id:
        if replaced in {c.attrs.get("Image") for c in client.containers.list(all=True)}:
            say(f"the image it replaced ({replaced[7:19]}) is still used by a container: `testbed images prune` "
                "removes it once none does")
        else:
            client.images.remove(replaced, force=True)
            say(f"removed the image it replaced ({replaced[7:19]})")
    return ref


def images(client: docker.DockerClient) -> list[Any]:
    return client.images.list(name=REPOSITORY)


def save(client: docker.DockerClient, path: str, say: Callable[[str], None] = print) -> str:
    """The current node image, as `docker save` output compressed with gzip (about a third of its size)."""
    ref = reference()
    if not present(client):
        raise NotFound(f"no node image {ref} to save (`testbed images build` makes it)")
    say(f"saving {ref} to {path}")
    tmp = f"{path}.part"
    with gzip.open(tmp, "wb", compresslevel=1) as out:
        for chunk in client.api.get_image(ref):
            out.write(chunk)
    os.replace(tmp, path)
    return ref


def load(client: docker.DockerClient, path: str, say: Callable[[str], None] = print) -> str:
    """Loads a file `save` wrote (gzip or plain `docker save`), if it holds the image the current recipe makes."""
    ref = reference()
    if not os.path.isfile(path):
        raise InvalidInput([Problem(path, "FILE", "no such file")])
    found = _saved_tags(path)
    if found is None:
        raise InvalidInput([Problem(path, "FILE", "not a saved image (expected `testbed images save` or `docker "
                                                  "save` output, optionally gzip-compressed)")])
    if ref not in found:
        raise InvalidInput([Problem(path, "FILE", f"holds {', '.join(found) or 'an untagged image'}, not {ref}, "
                                                  "which this testbed's recipe makes (save it again, or build)")])
    say(f"loading {ref} from {path}")
    opener = gzip.open if _is_gzip(path) else open
    with opener(path, "rb") as f:
        client.api.load_image(f)
    return ref


def copy(source: docker.DockerClient, target: docker.DockerClient, say: Callable[[str], None] = print,
         ref: str | None = None) -> bool:
    """An image (default: the current node image) put on another engine through both engines' APIs, streamed
    (`docker save | docker -H ... load`), when that engine lacks it; whether it was copied."""
    ref = ref or reference()
    if present(target, ref):
        return False
    if not present(source, ref):
        raise NotFound(f"no image {ref} to copy (`testbed images build` makes the node image)")
    say(f"copying {ref} to {target.api.base_url}")
    target.api.load_image(source.api.get_image(ref))  # requests sends a generator as a chunked body
    return True


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _saved_tags(path: str) -> list[str] | None:
    """The tags a docker-save tarball holds (its manifest.json), or None when it is not one."""
    try:
        opener = gzip.open if _is_gzip(path) else open
        with opener(path, "rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
            for member in tar:
                if member.name == "manifest.json":
                    data = tar.extractfile(member)
                    manifest = json.loads(data.read()) if data else []
                    return [t for entry in manifest for t in entry.get("RepoTags") or []]
    except (OSError, tarfile.TarError, EOFError, ValueError):
        return None
    return None


def prune(client: docker.DockerClient, say: Callable[[str], None] = print) -> list[str]:
    """Removes node images other than the current recipe's, unless a container still uses them: older tags,
    and the untagged ones a rebuild leaves behind (found by the label every node image carries)."""
    keep = reference()
    used = {c.attrs.get("Image") for c in client.containers.list(all=True)}
    gone = []
    found = {i.id: i for i in client.images.list(filters={"label": "testbed.image=node"})}
    found |= {i.id: i for i in images(client)}
    for image in found.values():
        if keep in image.tags or image.id in used:
            continue
        for name in image.tags or [image.short_id.removeprefix("sha256:")]:
            client.images.remove(name, force=not image.tags)
            say(f"removed {name}" if image.tags else f"removed untagged {name}")
            gone.append(name)
    return gone
