"""Historical import: send JSON Lines, Segment archives and CSV files to Segment, resumably.

From the command line, ``segment-lite import FILE... --write-key KEY`` (see
``segment-lite import --help``); from Python::

    from segment_lite.importer import run_import

    summary = run_import(["events.jsonl.gz"], write_key="KEY")
    print(summary.format())

Options are keyword arguments, or an :class:`ImportOptions` shared by every
entry point; for any iterable of dicts, :func:`import_rows`; for a Spark
DataFrame, ``segment_lite.spark.send_dataframe``.

Modules: ``options`` (ImportOptions), ``sources`` (reading files and rows),
``convert`` and ``mapping`` (row to client call), ``ids`` (derived
messageIds), ``engine`` (sending and confirming), ``state`` (checkpoint and
rejects file), ``summary`` and ``progress`` (reporting), ``runner`` (the entry
points), ``cli`` (the command).

The names below are imported on first use, so ``segment-lite --help`` (which
imports ``segment_lite.importer.cli``) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from segment_lite._lazy import lazy_exports

if TYPE_CHECKING:
    from segment_lite.importer.constants import DEFAULT_CHUNK_SIZE
    from segment_lite.importer.convert import ARCHIVE_STRIPPED_FIELDS, MESSAGE_TYPES, RowConverter, RowOptions
    from segment_lite.importer.engine import CLIENT_DEFAULTS
    from segment_lite.importer.errors import ImportConfigError, ImportDeliveryError, RowError
    from segment_lite.importer.ids import ID_NAMESPACE, derive_message_id
    from segment_lite.importer.mapping import FieldMapping, FieldRule
    from segment_lite.importer.options import ImportOptions, parse_shard
    from segment_lite.importer.runner import (
        default_checkpoint_path,
        default_rejects_path,
        import_rows,
        run_import,
        total_input_bytes,
    )
    from segment_lite.importer.sources import FILE_KEY_BYTES, Source, open_source
    from segment_lite.importer.state import Checkpoint, FileProgress
    from segment_lite.importer.summary import EXIT_CODES, ImportSummary
    from segment_lite.importer.timestamps import TimestampError, parse_timestamp, resolve_timezone

__all__ = [
    "ARCHIVE_STRIPPED_FIELDS",
    "CLIENT_DEFAULTS",
    "DEFAULT_CHUNK_SIZE",
    "EXIT_CODES",
    "FILE_KEY_BYTES",
    "ID_NAMESPACE",
    "MESSAGE_TYPES",
    "Checkpoint",
    "FieldMapping",
    "FieldRule",
    "FileProgress",
    "ImportConfigError",
    "ImportDeliveryError",
    "ImportOptions",
    "ImportSummary",
    "RowConverter",
    "RowError",
    "RowOptions",
    "Source",
    "TimestampError",
    "default_checkpoint_path",
    "default_rejects_path",
    "derive_message_id",
    "import_rows",
    "open_source",
    "parse_shard",
    "parse_timestamp",
    "resolve_timezone",
    "run_import",
    "total_input_bytes",
]

_HOMES = {
    "ARCHIVE_STRIPPED_FIELDS": "convert",
    "MESSAGE_TYPES": "convert",
    "RowConverter": "convert",
    "RowOptions": "convert",
    "ImportConfigError": "errors",
    "ImportDeliveryError": "errors",
    "RowError": "errors",
    "FieldMapping": "mapping",
    "FieldRule": "mapping",
    "DEFAULT_CHUNK_SIZE": "constants",
    "CLIENT_DEFAULTS": "engine",
    "ID_NAMESPACE": "ids",
    "derive_message_id": "ids",
    "ImportOptions": "options",
    "parse_shard": "options",
    "default_checkpoint_path": "runner",
    "default_rejects_path": "runner",
    "import_rows": "runner",
    "run_import": "runner",
    "total_input_bytes": "runner",
    "FILE_KEY_BYTES": "sources",
    "Source": "sources",
    "open_source": "sources",
    "Checkpoint": "state",
    "FileProgress": "state",
    "EXIT_CODES": "summary",
    "ImportSummary": "summary",
    "TimestampError": "timestamps",
    "parse_timestamp": "timestamps",
    "resolve_timezone": "timestamps",
}


__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals(), __all__)
