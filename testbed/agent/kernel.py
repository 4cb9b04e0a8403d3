"""What the kernel holds of a testbed-owned rule set, against what testbed means it to hold. The meant text is
loaded into a scratch network namespace and listed back, so both sides are in the kernel's own words (nft's and
iptables-save's) and compare line for line: handles, counters and the order of set elements left aside, and
the sets a rule fills at run time (ClientIP affinity's clients) not compared.

Used by `diagnose` (what differs, as evidence) and by `up` (a table changed behind testbed's back is loaded
again, whatever the agent remembers of its last sync)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

MAX_LINES = 12  # evidence lines per side

Lines = list[str]


async def _run(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(stdin.encode())
    return proc.returncode or 0, out.decode(), err.decode()


def _scratch(script: str) -> list[str]:
    """A command line running script in a new, empty network namespace (gone when it ends)."""
    return ["unshare", "--net", "sh", "-c", script]


# nftables: `nft -j list table` to compare, `nft list table` to show: a rule reads as nft prints it
def _rule_texts(listing: str) -> dict[str, list[str]]:
    """Chain → its rules as `nft list table` prints them, in order."""
    out: dict[str, list[str]] = {}
    chain = None
    for line in listing.splitlines():
        text = line.strip()
        if text.startswith("chain ") and text.endswith("{"):
            chain = text.split()[1]
            out[chain] = []
        elif text == "}":
            chain = None
        elif chain is not None and text and not text.startswith("type "):
            out[chain].append(text)
    return out


def _nft_lines(listing: str, text: str) -> Lines:
    """The table as comparable lines: a key (from the JSON) and, after a tab, how nft prints it."""
    data = json.loads(listing).get("nftables", []) if listing.strip() else []
    texts, seen = _rule_texts(text), dict[str, int]()
    out: Lines = []
    for item in data:
        kind, body = next(iter(item.items()))
        if kind in ("metainfo", "table"):
            continue
        if kind in ("set", "map"):
            dynamic = "dynamic" in body.get("flags", []) or "timeout" in body
            out.append(f"{kind} {body['name']} {json.dumps([body.get('type'), body.get('map')])}\t{kind} "
                       f"{body['name']}")
            if not dynamic:  # filled by packets, not by testbed
                out += sorted(f"{kind} {body['name']} {json.dumps(e, sort_keys=True)}\t{kind} {body['name']}: "
                              f"{_element(e)}" for e in body.get("elem", []))
        elif kind == "chain":
            hook = f" hook {body.get('hook')} {body.get('prio')}" if "hook" in body else ""
            out.append(f"chain {body['name']}{hook}\tchain {body['name']}{hook}")
        elif kind == "rule":
            i = seen[body["chain"]] = seen.get(body["chain"], -1) + 1
            shown = texts.get(body["chain"], [])
            out.append(f"rule {body['chain']} {json.dumps(body.get('expr'), sort_keys=True)}\tchain "
                       f"{body['chain']}: {shown[i] if i < len(shown) else '(a rule)'}")
    return out


def _element(e: Any) -> str:
    """A set or map element, shortly: concatenations joined with ' . ', a map's value after ' : '."""
    def flat(v: Any) -> str:
        if isinstance(v, dict):
            if "concat" in v:
                return " . ".join(flat(x) for x in v["concat"])
            if "prefix" in v:
                return f"{v['prefix']['addr']}/{v['prefix']['len']}"
            if "range" in v:
                return "-".join(flat(x) for x in v["range"])
            if "elem" in v:
                return flat(v["elem"]["val"])
            return " ".join(f"{k} {flat(x)}" if x is not None else k for k, x in v.items())
        if isinstance(v, list):
            return " . ".join(flat(x) for x in v)
        return str(v)

    return f"{flat(e[0])} : {flat(e[1])}" if isinstance(e, list) and len(e) == 2 else flat(e)


async def _nft_listing(family: str, table: str, meant: str | None = None) -> Lines | None:
    """Both listings, in one run: of the node's table, or (meant) of that text loaded in a scratch namespace."""
    lists = f"nft -j list table {family} {table} && printf '\\f\\n' && nft list table {family} {table}"
    argv = ["sh", "-c", lists] if meant is None else _scratch(f"nft -f - && {lists}")
    code, out, err = await _run(argv, meant or "")
    if code != 0:
        if meant is not None:
            raise RuntimeError(f"the meant table does not load: {err.strip()[-500:]}")
        return None  # no such table
    listing, _, text = out.partition("\f\n")
    return _nft_lines(listing, text)


async def nft_kernel(family: str, table: str) -> Lines | None:
    return await _nft_listing(family, table)


async def nft_meant(family: str, table: str, text: str) -> Lines:
    return await _nft_listing(family, table, text) or []


# iptables: iptables-save of the tables an owner renders
BUILTIN_CHAINS = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")
OWNED_CHAINS = ("KUBE-", "TESTBED-")  # testbed's installers'; CNI plugins' (CNI-HOSTPORT-...) are someone else's


def _foreign(line: str) -> bool:
    """A chain declaration or rule another program owns: its chain, or a built-in chain's jump to it."""
    parts = line.split()
    chain = parts[0][1:] if line.startswith(":") else parts[1]
    if chain not in BUILTIN_CHAINS:
        return not chain.startswith(OWNED_CHAINS)
    target = parts[parts.index("-j") + 1] if "-j" in parts[:-1] else ""
    return bool(target) and target not in ("ACCEPT", "DROP", "RETURN", "REJECT", "MARK", "DNAT", "SNAT",
                                           "MASQUERADE", "CONNMARK", "LOG", "NOTRACK", "CT") \
        and not target.startswith(OWNED_CHAINS)


def _ipt_lines(save: str, tables: list[str]) -> Lines:
    out: Lines = []
    table = ""
    for line in save.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif table in tables and line.startswith(":") and not _foreign(line):
            out.append(f"{table} {line.split()[0]}")
        elif table in tables and line.startswith("-A ") and not _foreign(line):
            out.append(f"{table} {line}")
    return out


def keep_foreign(save: str, text: str) -> str:
    """text (a whole iptables-restore input) with the chains and jumps other programs hold in its tables now
    (a CNI plugin's portmap chains), so a whole restore of testbed's rules leaves theirs in place."""
    held: dict[str, tuple[list[str], list[str]]] = {}
    table = ""
    for line in save.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith((":", "-A ")) and table and _foreign(line):
            chains, rules = held.setdefault(table, ([], []))
            (chains if line.startswith(":") else rules).append(line)
    if not held:
        return text
    out, table = [], ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        if line == "COMMIT" and table in held:
            chains, rules = held.pop(table)
            out += [c for c in chains if c.split()[0] not in {x.split()[0] for x in out}] + rules
        out.append(line)
    return "\n".join(out) + "\n"


async def ipt_kernel(tool: str, tables: list[str]) -> Lines:
    save = tool.replace("-restore", "-save")
    code, out, err = await _run([save])
    if code != 0:
        raise RuntimeError(f"{save}: {err.strip()[-300:]}")
    return _ipt_lines(out, tables)


async def ipt_meant(tool: str, text: str, tables: list[str]) -> Lines:
    save = tool.replace("-restore", "-save")
    code, out, err = await _run(_scratch(f"{tool} && {save}"), text)
    if code != 0:
        raise RuntimeError(f"the meant rules do not load: {err.strip()[-500:]}")
    return _ipt_lines(out, tables)


def tables_of(text: str) -> list[str]:
    """The tables an iptables-restore input declares."""
    return [line[1:].strip() for line in text.splitlines() if line.startswith("*")]


# ipsets: `ipset save`, the sets of one prefix
def _ipset_lines(save: str, prefix: str) -> Lines:
    out: Lines = []
    for line in save.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("create", "add") and parts[1].startswith(prefix):
            out.append(" ".join(parts[:3]) if parts[0] == "create" else line)
    return sorted(out)


async def ipset_kernel(prefix: str) -> Lines:
    code, out, _ = await _run(["ipset", "save"])
    return _ipset_lines(out, prefix) if code == 0 else []


def ipset_restore(sets: dict[str, dict[str, Any]]) -> str:
    """`ipset restore` input that makes these sets ({name: {type, family, members}})."""
    lines = [f"create {name} {spec['type']} family {spec['family']} -exist" for name, spec in sets.items()]
    lines += [f"add {name} {m}" for name, spec in sets.items() for m in spec["members"]]
    return "\n".join(lines) + "\n"


async def ipset_meant(sets: dict[str, dict[str, Any]], prefix: str) -> Lines:
    code, out, err = await _run(_scratch("ipset restore && ipset save"), ipset_restore(sets))
    if code != 0:
        raise RuntimeError(f"the meant sets do not load: {err.strip()[-500:]}")
    return _ipset_lines(out, prefix)


def _shown(lines: Lines) -> Lines:
    return [line.partition("\t")[2] or line for line in lines]


def compare(kernel: Lines | None, meant: Lines) -> dict[str, Any]:
    """{match, missing (meant, not in the kernel), extra (in the kernel, not meant)}, the lists cut short and
    each line as the tool prints it. Lines compare by their key (before a tab, when there is one)."""
    if kernel is None:
        return {"match": not meant, "present": False, "reordered": False, "missing": _shown(meant[:MAX_LINES]),
                "missingCount": len(meant), "extra": [], "extraCount": 0}
    have, want = _counts(kernel), _counts(meant)
    missing = [shown for key, (n, shown) in want.items() for _ in range(n - have.get(key, (0, ""))[0])]
    extra = [shown for key, (n, shown) in have.items() for _ in range(n - want.get(key, (0, ""))[0])]
    same = [_key(x) for x in kernel] == [_key(x) for x in meant]
    return {"match": same, "present": True, "reordered": not same and not (missing or extra),
            "missing": _shown(missing[:MAX_LINES]), "missingCount": len(missing), "extra": _shown(extra[:MAX_LINES]),
            "extraCount": len(extra)}


def _key(line: str) -> str:
    return line.partition("\t")[0]


def _counts(lines: Lines) -> dict[str, tuple[int, str]]:
    """key → (how many times, the first line with it)."""
    out: dict[str, tuple[int, str]] = {}
    for line in lines:
        n, first = out.get(_key(line), (0, line))
        out[_key(line)] = (n + 1, first)
    return out
