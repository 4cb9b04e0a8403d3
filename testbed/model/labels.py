"""Names that reach paths and container names, checked with the standard library alone: the command line checks
a lab's name before it imports the input model."""

from __future__ import annotations

import re

from testbed.errors import show

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def dns_label(value: str) -> str:
    if len(value) > 63 or not DNS1123_LABEL.match(value):
        raise ValueError(f"{show(value)} is not a DNS-1123 label (lowercase letters, digits and '-', at most 63)")
    return value


def lab_name(value: str) -> str:
    dns_label(value)
    if len(value) > 20:
        raise ValueError(f"{show(value)} is longer than 20 characters (it prefixes container and netns names)")
    return value
