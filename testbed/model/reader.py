"""Reading YAML files safely: bounded size, depth and alias expansion, the encodings YAML allows, duplicate keys
refused, and the line of every value kept, so every later error can name file, line and field.

Whatever a file holds, reading it ends in documents or in InvalidInput; never another exception, never
unbounded time or memory.
"""

from __future__ import annotations

import codecs
import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from testbed.errors import InvalidInput, NotFound, Problem, cut, show

Path_ = tuple[str | int, ...]

MAX_BYTES = 3 * 1024 * 1024  # the API server's request limit: no real manifest is larger
MAX_DEPTH = 64  # a Deployment is about 12 levels deep
MAX_VALUES = 200_000  # values after aliases are expanded (an "alias bomb" expands to billions)
BOMS = [(codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")]  # UTF-32 LE before UTF-16 LE
MERGE = "tag:yaml.org,2002:merge"


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


class _TooDeep(Exception):
    def __init__(self, mark: Any) -> None:
        self.mark = mark


# libyaml's scanner and parser, when PyYAML has them (Debian's and PyPI's wheels do): a 200-document file reads
# in 0.04 s instead of 0.3 s. The composer stays PyYAML's own, so the depth bound below holds either way.
try:
    from yaml.cyaml import CParser as _Parser
except ImportError:  # a PyYAML built without libyaml
    class _Parser(Reader, Scanner, Parser):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)


class _Loader(Composer, _Parser, SafeConstructor, Resolver):
    """A safe loader with a depth bound (the composer recurses once per level) and no timestamp type: unquoted
    dates stay strings, as Kubernetes reads YAML through JSON."""

    yaml_implicit_resolvers = {k: [r for r in v if r[0] != "tag:yaml.org,2002:timestamp"]
                               for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}

    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _TooDeep(self.peek_event().start_mark)
            return Composer.compose_node(self, parent, index)
        finally:
            self.depth -= 1


def _decode(raw: bytes, name: str) -> str:
    """UTF-8, or UTF-16/32 with a byte-order mark (what YAML 1.2 allows); anything else is refused."""
    for bom, codec in BOMS:
        if raw.startswith(bom):
            try:
                return raw[len(bom):].decode(codec)
            except UnicodeDecodeError as err:
                raise InvalidInput([Problem(name, "", f"not valid {codec.upper()} text (byte {err.start})")]) \
                    from None
    if b"\0" in raw[:8192]:
        raise InvalidInput([Problem(name, "", "a binary file, not YAML text")])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise InvalidInput([Problem(name, "", f"not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}); "
                                              "YAML files are UTF-8, or UTF-16/32 with a byte-order mark",
                                    line)]) from None


def _expanded_size(root: yaml.Node, name: str) -> None:
    """Counts the values the document holds once aliases are expanded, without expanding them: each node's
    size is computed once. Refuses recursive aliases and documents over MAX_VALUES."""
    size: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            active.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            if size[key] > MAX_VALUES:
                raise InvalidInput([Problem(name, "", f"expands to more than {MAX_VALUES:,} values through "
                                                      "aliases", node.start_mark.line + 1)])
            continue
        if key in size:
            continue
        if key in active:
            raise InvalidInput([Problem(name, "", "an alias refers to a value that contains it (a recursive "
                                                  "alias)", node.start_mark.line + 1)])
        active.add(key)
        stack.append((node, True))
        stack += [(c, False) for c in children if id(c) not in size]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _key(node: yaml.Node) -> str:
    return node.value if isinstance(node, yaml.ScalarNode) else "<complex key>"


Dups = dict[tuple[int, str], tuple[str, str]]


def _lines(node: yaml.Node, path: Path_, lines: dict[Path_, int], dups: Dups) -> None:
    """Record the line of every value under node; a merge key (<<) lends its fields' lines where not overridden.
    Duplicate keys go to dups, by line and key: the last would silently win, and real tools refuse them."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        merged = []
        first: dict[str, int] = {}
        for k, v in node.value:
            if k.tag == MERGE:
                merged += v.value if isinstance(v, yaml.SequenceNode) else [v]
                continue
            key, line = _key(k), k.start_mark.line + 1
            if key in first:
                dups[(line, key)] = (dotted((*path, key)), f"duplicate key (first at line {first[key]})")
            first.setdefault(key, line)
            lines[(*path, key)] = line
            _lines(v, (*path, key), lines, dups)
        for m in merged:
            for k, v in m.value if isinstance(m, yaml.MappingNode) else []:
                if (*path, _key(k)) not in lines:
                    _lines(v, (*path, _key(k)), lines, dups)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _lines(v, (*path, i), lines, dups)


def _plain(data: Any, name: str) -> Any:
    """What JSON can hold, as Kubernetes reads YAML: keys become strings, an explicit !!timestamp its text;
    binary values and sets are refused. Shared (aliased) values are copied, within MAX_VALUES."""
    if isinstance(data, dict):
        return {_text(k): _plain(v, name) for k, v in data.items()}
    if isinstance(data, list):
        return [_plain(v, name) for v in data]
    if isinstance(data, datetime.date):
        return data.isoformat()
    if isinstance(data, bytes | set):
        raise InvalidInput([Problem(name, "", f"a {type(data).__name__} value ({show(data)}): only strings, "
                                              "numbers, booleans, lists and mappings are allowed")])
    return data


def _text(key: Any) -> str:
    if isinstance(key, bool):
        return str(key).lower()
    return "null" if key is None else str(key)


def kind_of(path: Path) -> str:
    """'file', 'folder' or 'missing'; a path the kernel cannot even look up (too long, a NUL byte) is missing."""
    try:
        return "folder" if path.is_dir() else "file" if path.is_file() else "missing"
    except (OSError, ValueError):
        return "missing"


def read_docs(path: str | Path) -> list[Doc]:
    p = Path(path)
    name = str(path)
    kind = kind_of(p)
    if kind == "folder":
        raise InvalidInput([Problem(name, "", "is a folder, not a file")])
    if kind == "missing":
        raise NotFound(f"{cut(name, 300)}: no such file")
    if p.stat().st_size > MAX_BYTES:
        raise InvalidInput([Problem(name, "", f"is {p.stat().st_size:,} bytes; testbed reads files of at most "
                                              f"{MAX_BYTES // 1024 // 1024} MiB (the API server's limit)")])
    text = _decode(p.read_bytes(), name)
    docs = []
    dups: Dups = {}
    try:
        loader = _Loader(text)
        try:
            while loader.check_node():
                node = loader.get_node()
                _expanded_size(node, name)
                lines: dict[Path_, int] = {}
                _lines(node, (), lines, dups)  # before constructing: construction flattens merge keys in place
                data = _plain(loader.construct_document(node), name)
                if data is not None:
                    docs.append(Doc(data, name, lines))
        finally:
            loader.dispose()
    except _TooDeep as err:
        raise InvalidInput([Problem(name, "", f"nested more than {MAX_DEPTH} levels deep",
                                    err.mark.line + 1)]) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        if "maximum nesting depth" in str(err):  # libyaml's own bound, met before the composer's
            raise InvalidInput([Problem(name, "", f"nested more than {MAX_DEPTH} levels deep",
                                        mark.line + 1 if mark else None)]) from None
        raise InvalidInput([Problem(name, "", f"not valid YAML: {cut(str(getattr(err, 'problem', None) or err), 300)}",
                                    mark.line + 1 if mark else None)]) from None
    except (ValueError, OverflowError) as err:  # a value YAML parses but Python cannot hold (a huge integer)
        raise InvalidInput([Problem(name, "", f"a value cannot be read: {cut(str(err), 200)}")]) from None
    if dups:
        raise InvalidInput([Problem(name, where, why, line) for (line, _), (where, why) in sorted(dups.items())])
    return docs
