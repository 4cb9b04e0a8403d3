"""From one iptables-restore input testbed rendered to the next, the partial restore that kube-proxy sends after
its first sync: `iptables-restore --noflush` with only the chains whose rules changed (declaring a chain
flushes it), the new ones, and `-X` for the ones gone. Built-in chains are never touched; a change to one
means a full restore. Pure (unit-tested)."""

from __future__ import annotations

BUILTIN = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}

Tables = dict[str, dict[str, list[str]]]  # table → chain → its rules, in order


def parse(text: str) -> Tables | None:
    tables: Tables = {}
    current: dict[str, list[str]] | None = None
    for line in text.splitlines():
        if line.startswith("*"):
            current = tables.setdefault(line[1:], {})
        elif line.startswith(":") and current is not None:
            current.setdefault(line[1:].split()[0], [])
        elif line.startswith("-A ") and current is not None:
            chain = line.split()[1]
            if chain not in current:
                return None
            current[chain].append(line)
        elif line == "COMMIT":
            current = None
        elif line.strip():
            return None
    return tables


def script(old: str, new: str) -> str | None:
    before, after = parse(old), parse(new)
    if before is None or after is None or before.keys() != after.keys():
        return None
    out = []
    for table, chains in after.items():
        was = before[table]
        changed = [c for c, rules in chains.items() if was.get(c) != rules]
        gone = [c for c in was if c not in chains]
        if any(c in BUILTIN for c in changed + gone):
            return None
        if not changed and not gone:
            continue
        out.append(f"*{table}")
        out += [f":{c} - [0:0]" for c in changed + gone]
        for c in changed:
            out += chains[c]
        out += [f"-X {c}" for c in gone]
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""
