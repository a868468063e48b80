"""Historical import: send JSON Lines, Segment archives and CSV files to Segment, resumably.

From the command line, ``segment-lite import FILE... --write-key KEY`` (see
docs/import.md); from Python::

    from segment_lite.importer import run_import

    summary = run_import(["events.jsonl.gz"], write_key="KEY")
    print(summary.format())

and, for one Spark partition (or any iterable of dicts), :func:`import_rows`.
"""

from __future__ import annotations

from segment_lite.importer.convert import ARCHIVE_STRIPPED_FIELDS, MESSAGE_TYPES, RowConverter, RowOptions
from segment_lite.importer.errors import ImportConfigError, ImportDeliveryError, RowError
from segment_lite.importer.mapping import FieldMapping, FieldRule
from segment_lite.importer.runner import (
    CLIENT_DEFAULTS,
    DEFAULT_CHUNK_SIZE,
    EXIT_CODES,
    ID_NAMESPACE,
    ImportSummary,
    default_checkpoint_path,
    default_rejects_path,
    derive_message_id,
    import_rows,
    parse_shard,
    run_import,
    total_input_bytes,
)
from segment_lite.importer.sources import FILE_KEY_BYTES, Source, open_source
from segment_lite.importer.state import Checkpoint, FileProgress
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
