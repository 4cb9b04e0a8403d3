"""What the API-rule tests share: a manifest edited at one field, written to a file and loaded, and the check
that it is refused naming the file, the line, the field and the reason."""

import re
from pathlib import Path

import pytest
import yaml

from testbed.errors import InvalidInput
from testbed.model import loader


def edit(base: dict, path: str | tuple, value: object) -> dict:
    """A deep copy of base with the value at a dotted path (or a tuple of keys, for keys with dots) set."""
    doc = yaml.safe_load(yaml.safe_dump(base))
    parts = path if isinstance(path, tuple) else path.split(".")
    *parents, last = [int(p) if isinstance(p, str) and p.isdigit() else p for p in parts]
    cur = doc
    for p in parents:
        cur = cur[p]
    cur[last] = value
    return doc


def load(tmp_path: Path, doc: dict) -> list:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return loader.load_manifest_file(path)


def refused(tmp_path: Path, doc: dict, field: str, reason: str) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        load(tmp_path, doc)
    problems = info.value.problems
    field = re.sub(r"\.(\d+)", r"[\1]", field)  # as testbed prints a path: spec.rules[0].host
    assert any(p.field == field and reason in p.reason for p in problems), [str(p) for p in problems]
    assert all(p.file.endswith("m.yaml") and p.line for p in problems)
    return info.value
