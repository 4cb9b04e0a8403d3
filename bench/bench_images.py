"""The node image for CI caches: `images save` of the current image, then, with the image gone from the engine,
`images load` from the file and `up` of the default topology on it, against a build from nothing (mmdebstrap,
forced). Running labs keep their layers: the image is untagged, not deleted. And the node image copied to a
second engine (scripts/second-engine.sh: another host's engine, over TCP) through the two engines' APIs."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from common import ROOT, quiet, timed

from testbed import lab
from testbed.runtime import docker as rt
from testbed.runtime import images
from testbed.runtime.machines import Provider


def run() -> dict[str, float]:
    client = rt.connect()
    images.build(client, quiet)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "node.tar.gz")
        out["image_save_s"], _ = timed(lambda: images.save(client, path, quiet))
        out["image_file_mib"] = Path(path).stat().st_size / 2**20
        client.images.remove(images.reference(), force=True)
        out["image_load_s"], _ = timed(lambda: images.load(client, path, quiet))
        out["up_after_load_s"], _ = timed(lambda: lab.up(ROOT / "topologies" / "default.yaml", say=quiet,
                                                         name="bench-img"))
        lab.down("bench-img", say=quiet)
    out["image_build_from_nothing_s"], _ = timed(lambda: images.build(client, quiet, force=True))
    out["load_plus_up_s"] = out["image_load_s"] + out["up_after_load_s"]
    out["image_copy_to_second_engine_s"] = _copy()
    return out


def _copy() -> float:
    script = str(ROOT / "scripts" / "second-engine.sh")
    endpoint = subprocess.run(["bash", script, "up", "bench-img2"], capture_output=True, text=True, check=True,
                              timeout=120).stdout.strip()
    try:
        took, _ = timed(lambda: Provider().copy_image_to(Provider(endpoint=endpoint), quiet))
        return took
    finally:
        subprocess.run(["bash", script, "down", "bench-img2"], capture_output=True, check=False, timeout=120)


if __name__ == "__main__":
    print(run())
