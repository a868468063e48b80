"""Events loaded into DuckDB's ``ev`` table from JSON Lines (archives too), a collector store or Parquet."""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from segment_lite.audiences.errors import AudienceInputError

__all__ = ["INPUT_FORMATS", "InputStats", "detect_format", "load_events"]

INPUT_FORMATS = ("jsonl", "parquet", "collector")
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
#: Largest single JSON line read (bytes), as the collector's request limit would allow.
MAX_LINE_BYTES = 32 << 20

_EV_SCHEMA = (
    "CREATE OR REPLACE TABLE ev (rn BIGINT, uid VARCHAR, type VARCHAR, event VARCHAR, ts TIMESTAMP,"
    " props JSON, traits JSON, ctx JSON)"
)
# (column in the message, type it is read as)
_TEXT_COLUMNS = ("userId", "type", "event", "timestamp", "receivedAt")
_JSON_COLUMNS = ("properties", "traits", "context")


@dataclass
class InputStats:
    """How many events were read, used, and left out by reason (nothing is dropped uncounted)."""

    read: int = 0
    used: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The counts as a JSON-ready dict."""
        return {"read": self.read, "used": self.used, "skipped": dict(sorted(self.skipped.items()))}


def detect_format(path: str) -> str:
    """``parquet`` for ``.parquet``, ``collector`` for ``.db``/``.sqlite``, else ``jsonl`` (gzip ok)."""
    lower = path.lower()
    if lower.endswith(".parquet"):
        return "parquet"
    if lower.endswith(_SQLITE_SUFFIXES):
        return "collector"
    return "jsonl"


def _jsonl_relation(connection: Any, path: str) -> tuple[str, list[Any]]:
    columns = {name: "VARCHAR" for name in _TEXT_COLUMNS}
    columns.update({name: "JSON" for name in _JSON_COLUMNS})
    spec = "{" + ", ".join(f"'{k}': '{v}'" for k, v in columns.items()) + "}"
    # the column spec is built from the constants above; the path is a parameter
    sql = (
        f"SELECT * FROM read_json(?, format = 'newline_delimited', columns = {spec},"
        f" maximum_object_size = {MAX_LINE_BYTES})"
    )
    return sql, [path]


def _parquet_relation(connection: Any, path: str) -> tuple[str, list[Any]]:
    described = connection.execute("DESCRIBE SELECT * FROM read_parquet(?)", [path]).fetchall()
    types = {str(row[0]): str(row[1]).upper() for row in described}
    parts = []
    for name in _TEXT_COLUMNS:
        parts.append(
            f'CAST("{name}" AS VARCHAR) AS "{name}"' if name in types else f'NULL::VARCHAR AS "{name}"'
        )
    for name in _JSON_COLUMNS:
        kind = types.get(name)
        if kind is None:
            parts.append(f'NULL::JSON AS "{name}"')
        elif kind in ("VARCHAR", "JSON"):
            parts.append(f'CAST("{name}" AS JSON) AS "{name}"')
        else:  # a struct or map column: its JSON form
            parts.append(f'to_json("{name}") AS "{name}"')
    return f"SELECT {', '.join(parts)} FROM read_parquet(?)", [path]


def _collector_to_jsonl(path: str, directory: str) -> str:
    """The collector store's messages as a JSON Lines file (read through the store's public API)."""
    if not os.path.isfile(path):
        raise AudienceInputError(f"{path}: no such collector store")
    from segment_lite.collector import EventStore

    out = os.path.join(directory, "collector.jsonl")
    store = EventStore(path)
    try:
        with open(out, "w", encoding="utf-8") as fh:
            for message in store.messages():
                fh.write(json.dumps(message, ensure_ascii=False, separators=(",", ":")))
                fh.write("\n")
    finally:
        store.close()
    return out


def load_events(
    connection: Any,
    paths: Sequence[str],
    now: datetime.datetime,
    input_format: Optional[str] = None,
) -> InputStats:
    """Fill ``ev`` with the identified events of ``paths`` up to ``now`` (naive UTC); returns the counts.

    Events without a ``userId``, without a readable ``timestamp`` (``receivedAt``
    is the fallback) or later than ``now`` are counted in ``skipped`` and left out.
    """
    import duckdb

    if input_format is not None and input_format not in INPUT_FORMATS:
        raise AudienceInputError(f"input format must be one of: {', '.join(INPUT_FORMATS)}")
    if not paths:
        raise AudienceInputError("no inputs")
    connection.execute(_EV_SCHEMA)
    stats = InputStats()
    with tempfile.TemporaryDirectory(prefix="segment-lite-audiences-") as scratch:
        for index, path in enumerate(paths):
            kind = input_format or detect_format(path)
            if kind != "collector" and not os.path.isfile(path):
                raise AudienceInputError(f"{path}: no such file")
            try:
                if kind == "parquet":
                    relation, params = _parquet_relation(connection, path)
                else:
                    source = _collector_to_jsonl(path, scratch) if kind == "collector" else path
                    relation, params = _jsonl_relation(connection, source)
                connection.execute(
                    "CREATE OR REPLACE TEMP TABLE staged AS SELECT"
                    " row_number() OVER () AS line,"
                    " NULLIF(CAST(userId AS VARCHAR), '') AS uid, type, event,"
                    " timezone('UTC', COALESCE(TRY_CAST(\"timestamp\" AS TIMESTAMPTZ),"
                    " TRY_CAST(receivedAt AS TIMESTAMPTZ))) AS ts,"
                    f" properties AS props, traits, context AS ctx FROM ({relation})",
                    params,
                )
            except duckdb.Error as exc:
                raise AudienceInputError(f"{path}: cannot read as {kind}: {exc}") from None
            row = connection.execute(
                "SELECT count(*), count(*) FILTER (WHERE uid IS NULL),"
                " count(*) FILTER (WHERE uid IS NOT NULL AND ts IS NULL),"
                " count(*) FILTER (WHERE uid IS NOT NULL AND ts > ?) FROM staged",
                [now],
            ).fetchone()
            assert row is not None
            stats.read += int(row[0])
            for reason, n in zip(("no_user_id", "no_timestamp", "after_now"), row[1:]):
                if n:
                    stats.skipped[reason] = stats.skipped.get(reason, 0) + int(n)
            # input order breaks timestamp ties: input index in the high bits, line below
            connection.execute(
                "INSERT INTO ev SELECT ? * 1099511627776 + line, uid, type, event, ts, props, traits, ctx"
                " FROM staged WHERE uid IS NOT NULL AND ts IS NOT NULL AND ts <= ?",
                [index, now],
            )
            connection.execute("DROP TABLE staged")
    (used,) = connection.execute("SELECT count(*) FROM ev").fetchone() or (0,)
    stats.used = int(used)
    return stats
