"""A user's CNI configuration, checked before anything is made: the conflist is JSON with a `name`, a known
`cniVersion` and a non-empty `plugins` list whose members each have a `type`; every type has an executable of
that name in binDir (or is one of the reference plugins every node has); placeholders are the ones testbed
fills in. Each problem names the conflist (or binDir), the field and the reason."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from testbed.errors import Problem

VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
PLACEHOLDERS = ("podCIDR", "podCIDRv6", "nodeName")
PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
# what every node's image has (Debian's containernetworking-plugins, and testbed's own)
NODE_PLUGINS = ("bandwidth", "bridge", "dhcp", "firewall", "host-device", "host-local", "ipvlan", "loopback",
                "macvlan", "portmap", "ptp", "sbr", "static", "tuning", "vlan", "vrf", "testbed")


def _line_of(text: str, needle: str) -> int | None:
    at = text.find(needle)
    return text.count("\n", 0, at) + 1 if at >= 0 else None


def check(conflist: Path, bin_dir: Path) -> list[Problem]:
    """Problems of a user's conflist and plugin folder (none: it may be used)."""
    where = str(conflist)
    try:
        text = conflist.read_text()
    except OSError as err:
        return [Problem(where, "cni.conflist", f"cannot be read: {err.strerror}")]
    problems = [Problem(where, "", f"placeholder {{{{{name}}}}} does not exist (there are "
                                   f"{', '.join('{{' + p + '}}' for p in PLACEHOLDERS)})", _line_of(text, name))
                for name in PLACEHOLDER.findall(text) if name not in PLACEHOLDERS]
    try:
        data = json.loads(PLACEHOLDER.sub("x", text))
    except ValueError as err:
        return [*problems, Problem(where, "", f"is not JSON: {err}", getattr(err, "lineno", None))]
    if not isinstance(data, dict):
        return [*problems, Problem(where, "", "a conflist is a JSON object with name, cniVersion and plugins")]
    if data.get("cniVersion") not in VERSIONS:
        problems.append(Problem(where, "cniVersion", f"{data.get('cniVersion')!r} is not a CNI version "
                                                     f"({', '.join(VERSIONS)})", _line_of(text, '"cniVersion"')))
    if not isinstance(data.get("name"), str) or not data.get("name"):
        problems.append(Problem(where, "name", "a network name is required", _line_of(text, '"name"')))
    plugins = data.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        problems.append(Problem(where, "plugins", "a non-empty list of plugins is required",
                                _line_of(text, '"plugins"')))
        return problems
    for i, plugin in enumerate(plugins):
        kind = plugin.get("type") if isinstance(plugin, dict) else None
        if not isinstance(kind, str) or not kind:
            problems.append(Problem(where, f"plugins[{i}].type", "every plugin needs a type (its binary's name)"))
            continue
        binary = bin_dir / kind
        if binary.is_file():
            if not os.access(binary, os.X_OK):
                problems.append(Problem(str(binary), f"plugins[{i}].type", f"{binary} is not executable "
                                                                           "(chmod +x it)"))
        elif kind not in NODE_PLUGINS:
            problems.append(Problem(where, f"plugins[{i}].type", f"no binary {kind!r} in {bin_dir}",
                                    _line_of(text, f'"{kind}"')))
    return problems
