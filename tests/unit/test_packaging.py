"""The wheel lists its packages by hand (images/ and schema/ ship from the top of the repository): every
package of the tree must be among them, or an installed testbed would miss it."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_every_package_of_the_tree_is_in_the_wheel():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "testbed").rglob("__init__.py")}
    assert found <= listed, sorted(found - listed)


def test_every_benchmark_imports():
    """`make bench` is not run by CI: an import it lost (a module moved) is caught here."""
    import importlib
    import sys

    bench = Path(__file__).parents[2] / "bench"
    sys.path.insert(0, str(bench))
    try:
        for path in sorted(bench.glob("bench_*.py")):
            importlib.import_module(path.stem)
        importlib.import_module("run")
    finally:
        sys.path.remove(str(bench))
