"""Lazy re-exports for subpackages whose modules are costly to import (servers, SQLite, CLIs)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Callable


def lazy_exports(
    package: str, homes: Mapping[str, str], namespace: dict[str, Any], public: list[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a package: ``name`` is imported from its home on first use."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{home}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(list(namespace) + public)

    return __getattr__, __dir__
