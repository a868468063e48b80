"""A local Segment Tracking API collector: server, storage, debugger page and CLI commands.

The names below are imported lazily, so ``segment-lite --help`` (which imports
``segment_lite.collector.cli``) does not load the HTTP server or SQLite.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from segment_lite.collector.processing import Limits, RequestError
    from segment_lite.collector.server import Collector, CollectorStats, Headers, RecordedRequest
    from segment_lite.collector.store import EventStore, InsertResult, StoredEvent

__all__ = [
    "Collector",
    "CollectorStats",
    "EventStore",
    "Headers",
    "InsertResult",
    "Limits",
    "RecordedRequest",
    "RequestError",
    "StoredEvent",
]

_HOMES = {
    "Collector": "server",
    "CollectorStats": "server",
    "Headers": "server",
    "RecordedRequest": "server",
    "EventStore": "store",
    "InsertResult": "store",
    "StoredEvent": "store",
    "Limits": "processing",
    "RequestError": "processing",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
