"""The catalogue of bad inputs: each file in bad/ says on its first line the error it must produce. Every error
names the file, the line, the field path and the reason."""

from ipaddress import IPv4Network
from pathlib import Path

import pytest

from testbed import lab
from testbed.errors import InvalidInput
from testbed.model import loader

BAD = sorted((Path(__file__).parent / "bad").glob("*.yaml"))
ROOT = Path(__file__).parents[2]


def _load_and_plan(path: Path) -> None:
    loaded = lab.load(path)
    lab.build_plan(loaded.topology, loaded.manifests, IPv4Network("100.64.0.0/24"))


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_input_is_rejected_with_file_field_and_reason(path: Path):
    expected = path.read_text().splitlines()[0].removeprefix("# error: ")
    with pytest.raises(InvalidInput) as info:
        _load_and_plan(path)
    text = str(info.value)
    assert expected in text
    assert all(p.file.endswith(path.name) or p.file == "" for p in info.value.problems) or expected in text
    assert str(path) in text or path.name in text


def test_catalogue_is_not_empty():
    assert len(BAD) >= 20


@pytest.mark.parametrize("path", sorted((ROOT / "topologies").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_topologies_are_valid(path: Path):
    _load_and_plan(path)


def test_node_count_expands_to_names():
    topo = loader.load_topology(BAD[0].parent.parent / "good.yaml").topology
    assert [n.name for n in topo.nodes] == ["node1", "node2"]
    plan = lab.build_plan(topo, [], IPv4Network("100.64.0.0/24"))
    assert plan.pod_mtu == topo.networking.mtu - 50


def test_namespace_gets_its_metadata_name_label():
    docs = [loader.Doc({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}, "x.yaml")]
    (ns,) = loader.load_manifests(docs)
    assert ns.obj.metadata.labels == {"kubernetes.io/metadata.name": "team-a"}


def test_list_documents_are_expanded():
    item = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}
    docs = [loader.Doc({"apiVersion": "v1", "kind": "List", "items": [item, {**item, "metadata": {"name": "b"}}]},
                       "x.yaml")]
    assert [m.key for m in loader.load_manifests(docs)] == ["Namespace//a", "Namespace//b"]


def test_shipped_json_schema_is_current_and_validates_the_topologies():
    import json

    import jsonschema
    import yaml

    from testbed.model.topology import json_schema
    from testbed.network.registry import modes

    shipped = json.loads((ROOT / "schema" / "topology.schema.json").read_text())
    assert shipped == json_schema(sorted(modes())), "run: testbed schema > schema/topology.schema.json"
    for path in (ROOT / "topologies").glob("*.yaml"):
        jsonschema.validate(yaml.safe_load(path.read_text()), shipped)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"apiVersion": "testbed/v1alpha1", "kind": "Topology", "name": "x", "nodes": "3"},
                            shipped)
