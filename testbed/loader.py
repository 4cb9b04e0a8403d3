"""Read topology and manifest files into typed objects; every error names file, line, field path and reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from testbed import kube
from testbed.errors import InvalidInput, NotFound, Problem
from testbed.topology import Topology

Path_ = tuple[str | int, ...]


@dataclass
class Doc:
    """One YAML document, with the line of every value in it."""

    data: Any
    file: str
    lines: dict[Path_, int] = field(default_factory=dict)
    base: Path_ = ()  # where this document sits inside its file (for manifests inline in a topology)

    def line(self, path: Path_) -> int | None:
        path = self.base + path
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path)

    def problem(self, path: Path_, reason: str) -> Problem:
        return Problem(self.file, dotted(self.base + path), reason, self.line(path))


def dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _lines(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> None:
    """Record the line of every value under node; a merge key (<<) lends its fields' lines where not overridden."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        merged = []
        for k, v in node.value:
            if k.tag == "tag:yaml.org,2002:merge":
                merged += v.value if isinstance(v, yaml.SequenceNode) else [v]
                continue
            lines[(*path, k.value)] = k.start_mark.line + 1
            _lines(v, (*path, k.value), lines)
        for m in merged:
            for k, v in m.value:
                if (*path, k.value) not in lines:
                    _lines(v, (*path, k.value), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _lines(v, (*path, i), lines)


def read_docs(path: str | Path) -> list[Doc]:
    p = Path(path)
    if not p.is_file():
        raise NotFound(f"{path}: no such file")
    docs = []
    try:
        loader = yaml.SafeLoader(p.read_text())
        try:
            while loader.check_node():
                node = loader.get_node()
                lines: dict[Path_, int] = {}
                _lines(node, (), lines)  # before constructing: construction flattens merge keys in place
                data = loader.construct_document(node)
                if data is not None:
                    docs.append(Doc(data, str(path), lines))
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise InvalidInput([Problem(str(path), "", f"not valid YAML: {getattr(err, 'problem', err)}",
                                    mark.line + 1 if mark else None)]) from None
    return docs


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
        path = _strip_tags(e["loc"], doc.data)
        reason = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            reason = "unknown field"
        elif e["type"] == "literal_error":
            reason = f"{reason}, got {e.get('input')!r}"
        out.append(doc.problem(path, reason))
    return out


@dataclass
class Manifest:
    obj: kube.Object
    doc: Doc

    @property
    def key(self) -> str:
        return kube.key(self.obj)


def parse_manifest(doc: Doc) -> Manifest | list[Problem]:
    data = doc.data
    if not isinstance(data, dict):
        return [doc.problem((), "a manifest must be a mapping with apiVersion and kind")]
    kind = data.get("kind")
    if kind not in kube.KINDS:
        known = ", ".join(kube.KINDS)
        return [doc.problem(("kind",), f"kind {kind!r} is not supported (supported: {known})")]
    try:
        return Manifest(kube.KINDS[kind].model_validate(data), doc)
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


def load_topology(path: str | Path) -> tuple[Topology, list[Manifest]]:
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
    manifest_docs: list[Doc] = []
    problems: list[Problem] = []
    for i, entry in enumerate(topo.manifests):
        if isinstance(entry, str):
            target = (Path(path).parent / entry)
            if not target.is_file():
                problems.append(doc.problem(("manifests", i), f"no such file: {target}"))
                continue
            manifest_docs += read_docs(target)
        else:
            manifest_docs.append(Doc(entry, doc.file, doc.lines, ("manifests", i)))
    if problems:
        raise InvalidInput(problems)
    return topo, load_manifests(manifest_docs)
