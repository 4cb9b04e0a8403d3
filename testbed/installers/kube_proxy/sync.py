"""One node's kube-proxy sync, as kube-proxy's proxier does it: only what changed since the last sync's view
(map and set elements, or the chains of an iptables `--noflush` restore) when the node's agent confirms it
holds that view; the whole table otherwise, and why. What was done comes back for the events log."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from testbed.agent.nftdiff import _split_top
from testbed.installers.kube_proxy import ipt, nft
from testbed.installers.kube_proxy.view import NodeView
from testbed.runtime import agent


@dataclass
class Done:
    changed: bool
    how: str  # partial | whole
    why: str = ""  # why a whole table: first sync, agent stale, new endpoint count, `up` reads the kernel
    added: int = 0  # elements (nft) or rules (iptables) a partial sync added
    removed: int = 0  # elements, or chains
    unit: str = "element"

    def __str__(self) -> str:
        if self.how == "partial":
            gone = "chain" if self.unit == "rule" else "element"
            return f"partial sync, {self.added} {self.unit}(s) added, {self.removed} {gone}(s) removed"
        return f"whole table ({self.why})"

    def fields(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "changed"}


def _elements(script: str) -> tuple[int, int]:
    """Elements an nft patch adds and deletes."""
    added = removed = 0
    for line in script.splitlines():
        if " element " in line and "{" in line:
            n = len(_split_top(line[line.index("{") + 1:line.rindex("}")], ", "))
            if line.startswith("add element"):
                added += n
            elif line.startswith("delete element"):
                removed += n
    return added, removed


def _why(old: NodeView | None, verify: bool, stale: bool, fallback: str) -> str:
    if verify:
        return "`up` read the kernel"
    if old is None:
        return "first sync"
    return "the agent did not hold the last sync's rules" if stale else fallback


def nftables(run_dir: Path, view: NodeView, old: NodeView | None, verify: bool = False) -> Done:
    table = {"family": nft.FAMILY, "table": nft.TABLE, "token": view.fingerprint}
    script = nft.patch(old, view) if old is not None else None
    stale = False
    if script is not None and old is not None:
        answer = agent.call(run_dir, "rules", **table, patch=script, base=old.fingerprint)
        if not (stale := bool(answer.get("stale"))):
            return Done(bool(answer["changed"]), "partial", "", *_elements(script))
    answer = agent.call(run_dir, "rules", **table, text=nft.render(view), verify=verify)
    return Done(bool(answer["changed"]), "whole", _why(old, verify, stale, "a new number of endpoints needs a "
                                                                          "shared chain"))


def iptables(run_dir: Path, view: NodeView, old: NodeView | None, dual: bool, verify: bool = False) -> Done:
    token = f"{view.fingerprint}/{dual}"
    stale = False
    if old is not None:
        v4, v6 = ipt.patch(old, view, 4), ipt.patch(old, view, 6) if dual else ""
        if v4 is not None and v6 is not None:
            answer = agent.call(run_dir, "iptables", v4=v4, v6=v6 or None, base=f"{old.fingerprint}/{dual}",
                                token=token)
            if not (stale := bool(answer.get("stale"))):
                lines = [line for text in (v4, v6) for line in text.splitlines()]
                added, removed = sum(x.startswith("-A ") for x in lines), sum(x.startswith("-X ") for x in lines)
                return Done(bool(answer["changed"]), "partial", "", added, removed, "rule")
    answer = agent.call(run_dir, "iptables", v4=ipt.render(view, 4), v6=ipt.render(view, 6) if dual else None,
                        token=token, verify=verify)
    return Done(bool(answer["changed"]), "whole", _why(old, verify, stale, "a large change: a whole restore is "
                                                                          "quicker"))
