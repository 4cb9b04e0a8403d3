"""From one rendering of a testbed table to the next, the smallest nft script: elements added to and deleted from
maps and sets, changed chains flushed and refilled, new chains added, gone ones deleted, in one transaction.
That is what kube-proxy's nftables proxier does after its first sync: a change of one endpoint touches one
chain, not the table. Pure (unit-tested); the agent keeps the last text it applied.

It reads the shape testbed renders: `table F NAME {`, then one object per line (`  chain N { ...; }`,
`  map N { type ...; elements = { ... }; }`, `  set N { ...; }`, or a chain spread over lines ending in
`  }`), then `}`. Anything else, or a change to a base chain or to a map's or set's type, means a full reload.
"""

from __future__ import annotations

import re

OBJECT = re.compile(r"^  (chain|map|set) (\S+) \{(.*)\}$")
HEAD = re.compile(r"^  (chain|map|set) (\S+) \{")


def body(line: str) -> str:
    m = OBJECT.match(line)
    assert m is not None
    return m.group(3)
ELEMENTS = re.compile(r"^(.*?)(?: elements = \{ (.*) \};)? $")


def _split_top(text: str, sep: str) -> list[str]:
    """Split on sep outside braces (most bodies have none: the fast path)."""
    if "{" not in text:
        return [x.strip() for x in text.split(sep) if x.strip()]
    out, depth, cur = [], 0, ""
    i = 0
    while i < len(text):
        ch = text[i]
        depth += (ch == "{") - (ch == "}")
        if depth == 0 and text.startswith(sep, i):
            out.append(cur)
            cur, i = "", i + len(sep)
            continue
        cur += ch
        i += 1
    if cur.strip():
        out.append(cur)
    return [x.strip() for x in out if x.strip()]


def parse(text: str) -> tuple[str, dict[tuple[str, str], str]] | None:
    """(table header, {(kind, name): body}) or None when the text is not in testbed's shape."""
    lines = text.rstrip("\n").split("\n")
    if len(lines) < 2 or not lines[0].startswith("table ") or lines[-1] != "}":
        return None
    objects: dict[tuple[str, str], str] = {}
    i = 1
    while i < len(lines) - 1:
        line = lines[i]
        m = HEAD.match(line)
        if m and line.endswith("}"):  # the body is cut out only for objects that changed (see body())
            objects[(m.group(1), m.group(2))] = line
        elif line.startswith("  chain ") and line.endswith("{"):
            name = line.split()[1]
            body = []
            i += 1
            while i < len(lines) - 1 and lines[i] != "  }":
                body.append(lines[i].strip())
                i += 1
            objects[("chain", name)] = f"  chain {name} {{ " + "; ".join(body) + "; }"
        else:
            return None
        i += 1
    return lines[0][len("table "):-2].strip(), objects


def _elements(body: str) -> tuple[str, list[str]]:
    m = ELEMENTS.match(body)
    assert m is not None
    return m.group(1).strip(), _split_top(m.group(2) or "", ", ")


def _rules(body: str) -> list[str]:
    return _split_top(body, "; ")


def script(old: str, new: str) -> str | None:
    """The nft commands that turn the table `old` into `new`, or None when only a full reload will do."""
    before, after = parse(old), parse(new)
    if before is None or after is None or before[0] != after[0]:
        return None
    table, was, now = after[0], before[1], after[1]
    add_objects, fills, deletes, deleted_objects = [], [], [], []
    for key, line in now.items():
        kind, name = key
        old_line = was.get(key)
        if old_line == line:
            continue
        new_body, old_body = body(line), body(old_line) if old_line is not None else None
        if kind == "chain":
            rules = _rules(new_body)
            if any(r.startswith("type ") for r in rules) or (old_body and any(
                    r.startswith("type ") for r in _rules(old_body))):
                return None  # a base chain: hooks are not changed in place
            if old_body is None:
                add_objects.append(f"add chain {table} {name}")
            else:
                fills.append(f"flush chain {table} {name}")
            fills += [f"add rule {table} {name} {r}" for r in rules]
            continue
        decl, elements = _elements(new_body)
        if old_body is None:
            add_objects.append(f"add {kind} {table} {name} {{ {decl} }}")
            if elements:
                fills.append(f"add element {table} {name} {{ {', '.join(elements)} }}")
            continue
        old_decl, old_elements = _elements(old_body)
        if old_decl != decl:
            return None
        new_set, old_set = set(elements), set(old_elements)
        gone = [e for e in old_elements if e not in new_set]
        came = [e for e in elements if e not in old_set]
        if gone:
            deletes.append(f"delete element {table} {name} {{ {', '.join(_keys(kind, gone))} }}")
        if came:
            fills.append(f"add element {table} {name} {{ {', '.join(came)} }}")
    for key in was.keys() - now.keys():
        kind, name = key
        if kind == "chain" and any(r.startswith("type ") for r in _rules(body(was[key]))):
            return None
        deleted_objects.append(f"delete {kind} {table} {name}")
    # new chains and sets first (maps and rules refer to them), old elements out, new rules and elements in
    # maps name chains and chains name sets: what is gone goes in that order
    order = {"map": 0, "chain": 1, "set": 2}
    deleted_objects.sort(key=lambda command: order[command.split()[1]])
    return "\n".join([*add_objects, *deletes, *fills, *deleted_objects]) + "\n"


def _keys(kind: str, elements: list[str]) -> list[str]:
    """A map's element is deleted by its key alone."""
    return [e.split(" : ", 1)[0] for e in elements] if kind == "map" else elements
