"""A registry of plug-in classes found in one package: each module of the package registers its class with a
decorator when imported, and the registry imports every module once, on first use. Network modes and
installers are registries of this kind, so adding one is adding a file."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, package: str) -> None:
        self.package = package
        self.classes: dict[str, type[T]] = {}
        self.discovered = False

    def register(self, cls: type[T]) -> type[T]:
        self.classes[cls.name] = cls  # type: ignore[attr-defined]
        return cls

    def all(self) -> dict[str, type[T]]:
        """Every module imported once (importing one directly registers only that one)."""
        if not self.discovered:
            package = importlib.import_module(self.package)
            for info in pkgutil.iter_modules(package.__path__):
                importlib.import_module(f"{self.package}.{info.name}")
            self.discovered = True
        return self.classes
