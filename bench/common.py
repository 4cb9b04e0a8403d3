"""Helpers shared by the benchmarks: quiet lab handling and a figures table."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from testbed import lab

HERE = Path(__file__).parent
ROOT = HERE.parent


def quiet(_: str) -> None:
    pass


@contextmanager
def lab_up(topology: Path) -> Iterator[Any]:
    ctx = lab.up(topology, say=quiet)
    try:
        yield ctx
    finally:
        lab.down(ctx.lab, say=quiet)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def deployment(replicas: int, node: str | None = None) -> str:
    spec = f"nodeName: {node}\n      " if node else ""
    return f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: many}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: many}}}}
  template:
    metadata: {{labels: {{app: many}}}}
    spec:
      {spec}containers: [{{name: c, ports: [{{containerPort: 8080}}]}}]
"""
