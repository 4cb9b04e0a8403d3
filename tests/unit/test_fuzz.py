"""Fuzzing the loader and planner: whatever a topology or manifest file holds, reading and planning it either
succeeds or raises the project's own InvalidInput (or NotFound for a missing file): never another exception,
never a long run, never a message of more than a few KiB.

The unit suite runs a bounded number of cases. A long local run:
    TESTBED_FUZZ_EXAMPLES=200000 .venv/bin/pytest tests/unit/test_fuzz.py -q -s
"""

import os
import resource
import shutil
import tempfile
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testbed.errors import InvalidInput, NotFound
from testbed.model import loader
from testbed.plan import cluster

EXAMPLES = int(os.environ.get("TESTBED_FUZZ_EXAMPLES", "250"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=5000, derandomize="TESTBED_FUZZ_EXAMPLES" not in os.environ,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], database=None)
MAX_MESSAGE = 8 * 1024
ROOT = Path(__file__).parents[2]
GOOD = [p.read_text() for p in sorted((ROOT / "topologies").glob("*.yaml"))]
SEEDS = GOOD + [p.read_text() for p in sorted((Path(__file__).parent / "bad").glob("*.yaml"))]
MANIFESTS = [p.read_text() for p in sorted((ROOT / "topologies" / "manifests").glob("*.yaml"))]
WORK = Path(tempfile.mkdtemp(prefix="testbed-fuzz-"))
shutil.copytree(ROOT / "topologies" / "manifests", WORK / "manifests")  # what the seeds refer to
COUNT = {"cases": 0, "loaded": 0, "refused": 0}
YAML_BYTES = b"&*!%{}[]:-?|>'\"\t\n#,@`\\ \x00\xff\xfe"

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                    st.text(max_size=40), st.sampled_from(["10.244.0.0/16", "fd00::/64", "vxlan", "TCP", "In",
                                                           "Exists", "default", "node1", "apps/v1", "v1"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)


def _check(path: Path, as_topology: bool) -> None:
    COUNT["cases"] += 1
    try:
        if as_topology:
            loaded = loader.load_topology(path)
            cluster.build(loaded.topology, loaded.manifests, IPv4Network("100.64.0.0/24"))
        else:
            loader.load_manifest_file(path)
        COUNT["loaded"] += 1
    except (InvalidInput, NotFound) as err:
        COUNT["refused"] += 1
        assert len(str(err)) <= MAX_MESSAGE, f"a {len(str(err))}-character message"


def _paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(data: Any, path: tuple, op: str, value: Any) -> Any:
    if not path:
        return value
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if op == "delete":
        del parent[last]
    elif op == "add" and isinstance(parent, dict):
        parent[f"{last}x"] = value
    else:
        parent[last] = value
    return data


@SETTINGS
@given(seed=st.sampled_from(GOOD), data=st.data())
def test_structural_mutations_load_or_are_refused(seed: str, data: st.DataObject) -> None:
    try:
        doc = yaml.safe_load(seed)
    except yaml.YAMLError:
        return
    for _ in range(data.draw(st.integers(0, 2))):
        paths = _paths(doc)
        path = data.draw(st.sampled_from(paths))
        doc = _mutate(doc, path, data.draw(st.sampled_from(["set", "delete", "add"])), data.draw(values))
    path = WORK / "topology.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    _check(path, True)


@SETTINGS
@given(seed=st.sampled_from(SEEDS + MANIFESTS), edits=st.lists(
    st.tuples(st.floats(0, 1), st.sampled_from(["insert", "delete", "replace", "repeat"]),
              st.binary(min_size=1, max_size=4) | st.sampled_from([bytes([b]) for b in YAML_BYTES])),
    min_size=1, max_size=6), as_topology=st.booleans())
def test_byte_mutations_load_or_are_refused(seed: str, edits: list, as_topology: bool) -> None:
    raw = bytearray(seed.encode())
    for where, op, chunk in edits:
        i = int(where * len(raw))
        if op == "insert":
            raw[i:i] = chunk
        elif op == "delete":
            del raw[i:i + len(chunk)]
        elif op == "replace":
            raw[i:i + len(chunk)] = chunk
        else:  # a line repeated: duplicate keys, long documents
            start = raw.rfind(b"\n", 0, i) + 1
            end = raw.find(b"\n", i)
            line = raw[start:end if end >= 0 else len(raw)]
            raw[start:start] = (line + b"\n") * len(chunk)
    path = WORK / "mutated.yaml"
    path.write_bytes(bytes(raw))
    _check(path, as_topology)


def test_memory_stayed_bounded_and_cases_ran():
    """Runs after the fuzz tests in this file: the process never grew past a few hundred MiB."""
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nfuzz: {COUNT['cases']} cases, {COUNT['loaded']} loaded, {COUNT['refused']} refused; "
          f"peak RSS {peak_mib:.0f} MiB")
    assert COUNT["cases"] >= min(EXAMPLES, 100)
    assert peak_mib < 1024
