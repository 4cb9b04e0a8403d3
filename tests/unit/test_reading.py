"""Files that are not plain YAML text: encodings, sizes, depth, aliases, odd values. Each either loads or gives
one clear InvalidInput naming the file; none gives a traceback, runs long or echoes a huge value."""

import codecs
import json
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from testbed.errors import InvalidInput, NotFound
from testbed.model import loader
from testbed.model.reader import MAX_BYTES, MAX_DEPTH
from testbed.plan import cluster

GOOD = (Path(__file__).parent / "good.yaml").read_text()


def _write(tmp_path: Path, data: bytes | str, name: str = "t.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _problem(path: Path) -> str:
    with pytest.raises(InvalidInput) as info:
        loader.load_topology(path)
    text = str(info.value)
    assert path.name in text
    return text


@pytest.mark.parametrize("bom,codec", [(codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
                                       (codecs.BOM_UTF16_BE, "utf-16-be"), (codecs.BOM_UTF32_LE, "utf-32-le"),
                                       (codecs.BOM_UTF32_BE, "utf-32-be")])
def test_utf16_and_utf32_with_a_byte_order_mark_are_read(tmp_path, bom, codec):
    path = _write(tmp_path, bom + GOOD.encode(codec))
    assert loader.load_topology(path).topology.name == "good"


def test_a_binary_file_is_refused(tmp_path):
    assert "a binary file, not YAML text" in _problem(_write(tmp_path, b"\x7fELF\x02\x01\x01\x00" * 64))


def test_text_that_is_not_utf8_is_refused_with_its_line(tmp_path):
    text = _problem(_write(tmp_path, GOOD.encode() + b"# caf\xe9\n"))
    assert ":5: not UTF-8 text (byte 0xe9" in text


def test_deep_nesting_is_refused_without_recursing(tmp_path):
    text = _problem(_write(tmp_path, GOOD + "x: " + "[" * 20000 + "]" * 20000 + "\n"))
    assert f"nested more than {MAX_DEPTH} levels deep" in text
    assert len(text) < 500


def test_a_file_over_the_size_limit_is_refused_before_reading(tmp_path):
    path = _write(tmp_path, GOOD + ("#" * 1000 + "\n") * (MAX_BYTES // 1000 + 1))
    assert "testbed reads files of at most 3 MiB" in _problem(path)


def test_a_huge_value_is_not_echoed(tmp_path):
    value = "v" * 2_000_000
    path = _write(tmp_path, GOOD + f"manifests:\n  - {{apiVersion: v1, kind: Namespace, metadata: "
                                   f"{{name: n, labels: {{a: {value}}}}}}}\n")
    text = _problem(path)
    assert "must be empty or 1-63 alphanumerics" in text
    assert len(text) < 2000


def test_a_folder_is_named_as_a_folder(tmp_path):
    assert "is a folder, not a file" in _problem(tmp_path)
    with pytest.raises(InvalidInput, match="is a folder, not a file"):
        loader.load_manifest_file(tmp_path)
    with pytest.raises(NotFound, match="no such file"):
        loader.load_topology(tmp_path / "missing.yaml")


def test_unquoted_dates_stay_strings_as_kubernetes_reads_them(tmp_path):
    path = _write(tmp_path, GOOD + "manifests:\n  - {apiVersion: v1, kind: Namespace, metadata: {name: n, "
                                   "creationTimestamp: 2024-01-02T03:04:05Z}, other: !!timestamp 2024-01-02}\n")
    (ns,) = loader.load_topology(path).manifests
    assert json.loads(json.dumps(ns.doc.data))["metadata"]["creationTimestamp"] == "2024-01-02T03:04:05Z"
    assert ns.doc.data["other"] == "2024-01-02"


@pytest.mark.parametrize("tail,reason", [
    ("x: !!binary aGVsbG8=\n", "a bytes value"),
    ("x: !!set {a, b}\n", "a set value"),
    ("x: " + "9" * 5000 + "\n", "a value cannot be read"),
    ("? [a, b]\n: c\n", "not valid YAML"),
    ("x: !!python/object:os.system ls\n", "not valid YAML"),
    ("manifests: ['a\\0b']\n", "no such file"),
    ("manifests: ['" + "a" * 5000 + "']\n", "no such file"),
])
def test_odd_values_give_one_clear_problem(tmp_path, tail, reason):
    text = _problem(_write(tmp_path, GOOD + tail))
    assert reason in text
    assert len(text) < 2000


def test_a_long_pod_name_gets_a_63_character_hostname_and_a_short_netns():
    name = "p" * 62 + "-" + "q" * 100
    docs = [loader.Doc({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                        "spec": {"containers": [{"name": "c"}]}}, "x.yaml")]
    topo = loader.load_topology(Path(__file__).parent / "good.yaml").topology
    (pod,) = cluster.build(topo, loader.load_manifests(docs), IPv4Network("100.64.0.0/24")).pods
    assert pod.hostname == "p" * 62  # cut to 63, and the trailing '-' dropped, as the kubelet does
    assert len(pod.netns) <= cluster.MAX_NETNS
    assert pod.netns.startswith("default_ppp")
