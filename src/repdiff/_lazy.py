"""Lazy submodules for the package's ``__init__`` files: ``import repdiff`` stays cheap (no torch models,
no diffusers) and ``repdiff.sd.detection`` is imported on first use."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from typing import Any


def submodule_names(path: Sequence[str]) -> list[str]:
    """The public submodules of a package (pass its ``__path__``), sorted: the package's ``__all__``."""
    return sorted(m.name for m in pkgutil.iter_modules(path) if not m.name.startswith("_"))


def lazy_submodules(package: str, names: Sequence[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for a package whose submodules ``names`` load when first accessed."""
    known = frozenset(names)

    def __getattr__(name: str) -> Any:
        if name in known:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(known)

    return __getattr__, __dir__
