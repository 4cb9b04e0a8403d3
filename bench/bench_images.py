"""The node image for CI caches: `images save` of the current image, then, with the image gone from the engine,
`images load` from the file and `up` of the default topology on it, against a build from nothing (mmdebstrap,
forced). Running labs keep their layers: the image is untagged, not deleted."""

from __future__ import annotations

import tempfile
from pathlib import Path

from common import ROOT, quiet, timed

from testbed import lab
from testbed.runtime import docker as rt
from testbed.runtime import images


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
    return out


if __name__ == "__main__":
    print(run())
