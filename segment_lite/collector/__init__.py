"""A local Segment Tracking API collector: server, storage, debugger page and CLI commands.

The names below are imported lazily, so ``segment-lite --help`` (which imports
``segment_lite.collector.cli``) does not load the HTTP server or SQLite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from segment_lite._lazy import lazy_exports

if TYPE_CHECKING:
    from segment_lite.collector.http_server import Headers
    from segment_lite.collector.processing import Limits, RequestError
    from segment_lite.collector.recording import CollectorStats, RecordedRequest
    from segment_lite.collector.server import Collector
    from segment_lite.collector.settings import Auth, CollectorLimits, Faults
    from segment_lite.collector.store import EventStore, InsertResult, StoredEvent
    from segment_lite.collector.tracking import Annotator, CredentialCheck, Credentials, WriteKeyCheck

__all__ = [
    "Annotator",
    "Auth",
    "Collector",
    "CollectorLimits",
    "CollectorStats",
    "CredentialCheck",
    "Credentials",
    "EventStore",
    "Faults",
    "Headers",
    "InsertResult",
    "Limits",
    "RecordedRequest",
    "RequestError",
    "StoredEvent",
    "WriteKeyCheck",
]

_HOMES = {
    "Collector": "server",
    "Auth": "settings",
    "CollectorLimits": "settings",
    "Faults": "settings",
    "CollectorStats": "recording",
    "Headers": "http_server",
    "RecordedRequest": "recording",
    "Annotator": "tracking",
    "CredentialCheck": "tracking",
    "Credentials": "tracking",
    "WriteKeyCheck": "tracking",
    "EventStore": "store",
    "InsertResult": "store",
    "StoredEvent": "store",
    "Limits": "processing",
    "RequestError": "processing",
}


__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals(), __all__)
