"""Bringing one lab up again from a changed topology (another network or kube-proxy mode): the e2e modules
that switch a running lab between modes share this."""

from pathlib import Path
from typing import Any

import yaml

from testbed import lab as labs
from testbed.pytest_plugin import Lab


def up_from(topo: dict[str, Any], folder: Path, base: Path | None = None) -> Lab:
    """Writes topo into folder (its manifest paths resolved against base, the original file's folder) and brings
    it up, taking over the lab of the same name that runs from another file."""
    if base is not None:
        topo["manifests"] = [str(base / m) if isinstance(m, str) else m for m in topo["manifests"]]
    path = folder / f"{topo['name']}.yaml"
    path.write_text(yaml.safe_dump(topo))
    labs.up(path, replace=True, say=lambda _: None)
    return Lab(topo["name"])
