"""Computed traits, audiences and attribution from your own events, synced to Segment as identify calls.

From the command line, ``segment-lite audiences compute|preview|sync DEFINITIONS INPUT...``
(see ``segment-lite audiences --help``); from Python::

    from segment_lite.audiences import compute, sync

    result = compute("definitions.yaml", ["events.jsonl"], now="2024-06-01T00:00:00Z")
    print(result.audience_sizes)
    summary = sync("definitions.yaml", ["events.jsonl"], write_key="KEY", state="audiences.state.db")

Modules: ``definitions`` (the file and its validation), ``inputs`` (events into
DuckDB), ``sql`` (definitions compiled to SQL), ``compute`` (running it),
``state`` and ``sync`` (what was sent, and sending the changes), ``spark``
(the same on a Spark DataFrame), ``preview`` (a local page), ``cli``.
Needs ``pip install "segment-lite[audiences]"`` (DuckDB and PyYAML); the names
below are imported on first use, so ``import segment_lite`` loads neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from segment_lite._lazy import lazy_exports

if TYPE_CHECKING:
    from segment_lite.audiences.compute import AudienceResult, compute
    from segment_lite.audiences.definitions import Definitions, load_definitions, parse_definitions
    from segment_lite.audiences.errors import AudienceInputError, AudienceSyncError, DefinitionError
    from segment_lite.audiences.preview import PreviewServer
    from segment_lite.audiences.spark import compute_spark
    from segment_lite.audiences.sync import SyncSummary, sync

__all__ = [
    "AudienceInputError",
    "AudienceResult",
    "AudienceSyncError",
    "DefinitionError",
    "Definitions",
    "PreviewServer",
    "SyncSummary",
    "compute",
    "compute_spark",
    "load_definitions",
    "parse_definitions",
    "sync",
]

_HOMES = {
    "AudienceResult": "compute",
    "compute": "compute",
    "Definitions": "definitions",
    "load_definitions": "definitions",
    "parse_definitions": "definitions",
    "AudienceInputError": "errors",
    "AudienceSyncError": "errors",
    "DefinitionError": "errors",
    "PreviewServer": "preview",
    "compute_spark": "spark",
    "SyncSummary": "sync",
    "sync": "sync",
}

__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals(), __all__)
