"""Read topology and manifest files into typed objects; every error names file, line, field path and reason."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from testbed.errors import InvalidInput, Problem, show
from testbed.model import kube
from testbed.model.cni import check as cni_check
from testbed.model.names import At
from testbed.model.reader import Doc, Path_, kind_of, read_docs
from testbed.model.topology import CniPlugins, Topology

__all__ = [
    "Doc",
    "Manifest",
    "Path_",
    "TopologyFile",
    "load_manifest_file",
    "load_topology",
    "parse_manifest",
    "read_docs",
]

def _strip_tags(loc: tuple[Any, ...], data: Any) -> Path_:
    """Pydantic puts union and validator tags ('list[...]', 'function-after[...]') in error paths; drop them."""
    out: list[str | int] = []
    cur = data
    for part in loc:
        in_list = isinstance(part, int) and isinstance(cur, list) and part < len(cur)
        if in_list or (isinstance(part, str) and isinstance(cur, dict) and part in cur):
            out.append(part)
            cur = cur[part]
        elif isinstance(part, str) and ("[" in part or part in ("int", "str", "bool", "float")):
            continue
        else:
            out.append(part)
            cur = None
    return tuple(out)


def problems_of(err: ValidationError, doc: Doc) -> list[Problem]:
    out = []
    for e in err.errors():
        cause = (e.get("ctx") or {}).get("error")
        loc = (*e["loc"], *cause.path) if isinstance(cause, At) else e["loc"]  # the field inside the object
        path = _strip_tags(loc, doc.data)
        reason = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            reason = "unknown field"
        elif e["type"] == "literal_error":
            reason = f"{reason}, got {show(e.get('input'))}"
        out.append(doc.problem(path, reason))
    return out


@dataclass
class Manifest:
    obj: kube.Object
    doc: Doc
    origin: str = "apply"  # "topology": what a re-run of `up` refreshes (and prunes) from the file; "addon": an
    # object an installer adds (the cluster DNS), never stored

    @property
    def key(self) -> str:
        return kube.key(self.obj)


KINDS = kube.KINDS


def parse_manifest(doc: Doc) -> Manifest | list[Problem]:
    data = doc.data
    if not isinstance(data, dict):
        return [doc.problem((), "a manifest must be a mapping with apiVersion and kind")]
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        known = ", ".join(KINDS)
        return [doc.problem(("kind",), f"kind {show(kind)} is not supported (supported: {known})")]
    try:
        return Manifest(KINDS[kind].model_validate(data), doc)
    except ValidationError as err:
        return problems_of(err, doc)


def expand_lists(docs: list[Doc]) -> list[Doc]:
    """`kind: List` documents (what `kubectl get -o yaml` prints) become their items."""
    out = []
    for doc in docs:
        if isinstance(doc.data, dict) and doc.data.get("kind") == "List" and isinstance(doc.data.get("items"),
                                                                                         list):
            out += [Doc(item, doc.file, doc.lines, (*doc.base, "items", i))
                    for i, item in enumerate(doc.data["items"])]
        else:
            out.append(doc)
    return out


def load_manifests(docs: list[Doc]) -> list[Manifest]:
    problems: list[Problem] = []
    out: list[Manifest] = []
    seen: dict[str, Doc] = {}
    for doc in expand_lists(docs):
        result = parse_manifest(doc)
        if isinstance(result, list):
            problems += result
            continue
        if result.key in seen:
            problems.append(doc.problem(("metadata", "name"), f"{result.key} is defined twice"))
        seen[result.key] = doc
        out.append(result)
    if problems:
        raise InvalidInput(problems)
    return out


def load_manifest_file(path: str | Path) -> list[Manifest]:
    return load_manifests(read_docs(path))


def display(key: str) -> str:
    """A key as people read it: `Namespace team-a`, `Pod default/web`."""
    kind, ns, name = key.split("/", 2)
    return f"{kind} {ns}/{name}" if ns else f"{kind} {name}"


def load_keys(path: str | Path) -> list[str]:
    """What `delete -f` needs of each object, as kubectl: its kind, namespace and name; the rest of a document
    is not checked, so a file whose objects would be refused still names what to delete. The built-in
    namespaces may not be deleted, as the API server says."""
    problems: list[Problem] = []
    keys: list[str] = []
    for doc in expand_lists(read_docs(path)):
        data = doc.data if isinstance(doc.data, dict) else {}
        kind, meta = data.get("kind"), data.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        namespace = (meta.get("namespace") if isinstance(meta, dict) else None) or "default"
        if not isinstance(kind, str) or kind not in KINDS:
            problems.append(doc.problem(("kind",), f"kind {show(kind)} is not supported (supported: "
                                                   f"{', '.join(KINDS)})"))
        elif not isinstance(name, str) or not name:
            problems.append(doc.problem(("metadata", "name"), "Required value: the name of the object to delete"))
        elif not isinstance(namespace, str):
            problems.append(doc.problem(("metadata", "namespace"), f"{show(namespace)} is not a namespace name"))
        elif kind == "Namespace" and name in kube.BUILTIN_NAMESPACES:
            problems.append(doc.problem(("metadata", "name"), f"namespace {name!r} may not be deleted (it is "
                                                              "built in, as in every cluster)"))
        else:
            scoped = KINDS[kind] in kube.CLUSTER_SCOPED
            keys.append(f"{kind}/{'' if scoped else namespace}/{name}")
    if problems:
        raise InvalidInput(problems)
    return list(dict.fromkeys(keys))


@dataclass
class TopologyFile:
    topology: Topology
    manifests: list[Manifest]
    doc: Doc  # for errors found later, against other labs or the machine, to name a line of this file


def _cni_files(cni: CniPlugins, base: Path, doc: Doc) -> CniPlugins:
    """The user's conflist and plugin folder, found from the topology's folder and checked; their paths made
    absolute, as the lab keeps them."""
    conflist, bin_dir = (base / cni.conflist).resolve(), (base / cni.binDir).resolve()
    if not conflist.is_file():
        raise InvalidInput([doc.problem(("cni", "conflist"), f"no such file: {conflist}")])
    if not bin_dir.is_dir():
        raise InvalidInput([doc.problem(("cni", "binDir"), f"no such folder: {bin_dir}")])
    problems = cni_check(conflist, bin_dir)
    if problems:
        raise InvalidInput(problems)
    return cni.model_copy(update={"conflist": str(conflist), "binDir": str(bin_dir)})


def load_topology(path: str | Path) -> TopologyFile:
    docs = read_docs(path)
    if len(docs) != 1:
        raise InvalidInput([Problem(str(path), "", f"expected one YAML document, found {len(docs)}")])
    doc = docs[0]
    if not isinstance(doc.data, dict):
        raise InvalidInput([doc.problem((), "a topology must be a mapping (apiVersion, kind, name, nodes...)")])
    try:
        topo = Topology.model_validate(doc.data)
    except ValidationError as err:
        raise InvalidInput(problems_of(err, doc)) from None
    if isinstance(topo.cni, CniPlugins):
        topo.cni = _cni_files(topo.cni, Path(path).parent, doc)
    manifest_docs: list[Doc] = []
    problems: list[Problem] = []
    for i, entry in enumerate(topo.manifests):
        if isinstance(entry, str):
            target = (Path(path).parent / entry)
            kind = kind_of(target)
            if kind != "file":
                problems.append(doc.problem(("manifests", i), f"{target} is a folder; name a manifest file"
                                            if kind == "folder" else f"no such file: {target}"))
                continue
            manifest_docs += read_docs(target)
        else:
            manifest_docs.append(Doc(entry, doc.file, doc.lines, ("manifests", i)))
    if problems:
        raise InvalidInput(problems)
    manifests = load_manifests(manifest_docs)
    for m in manifests:
        m.origin = "topology"
    return TopologyFile(topo, manifests, doc)
