"""Compute every user's traits and audience memberships with DuckDB, as of a given "now"."""

from __future__ import annotations

import datetime
import decimal
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from segment_lite.audiences.definitions import Definitions, load_definitions
from segment_lite.audiences.errors import DefinitionError
from segment_lite.audiences.inputs import InputStats, load_events
from segment_lite.audiences.sql import (
    Query,
    attribution_sql,
    audiences_sql,
    json_pointer,
    quote_ident,
    traits_sql,
)

__all__ = ["AudienceResult", "compute", "format_time", "parse_now"]


def format_time(value: datetime.datetime) -> str:
    """A UTC time as Segment writes it: ``2024-05-01T12:00:00.000Z``."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_now(value: Union[str, datetime.datetime, None]) -> datetime.datetime:
    """``now`` as a naive UTC datetime, from ISO 8601 text, a datetime (naive is UTC) or None (the clock)."""
    if value is None:
        moment = datetime.datetime.now(datetime.timezone.utc)
    elif isinstance(value, datetime.datetime):
        moment = value
    else:
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"now: {value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return moment


@dataclass
class AudienceResult:
    """The outcome of :func:`compute`: per-user values, audience sizes and input counts.

    ``users`` maps each userId to every computed value (traits, attribution
    keys, audience booleans); ``synced_keys`` lists the keys a sync sends.
    """

    definitions: Definitions
    now: datetime.datetime
    users: dict[str, dict[str, Any]]
    keys: list[str]
    synced_keys: list[str]
    inputs: InputStats
    elapsed_s: float
    audience_sizes: dict[str, int] = field(default_factory=dict)

    def synced_values(self, user_id: str) -> dict[str, Any]:
        """The values of ``user_id`` that a sync sends (``None`` means absent)."""
        values = self.users[user_id]
        return {key: values[key] for key in self.synced_keys}

    def members(self, audience_key: str) -> list[str]:
        """The userIds in an audience, sorted."""
        return sorted(uid for uid, values in self.users.items() if values.get(audience_key) is True)


def _value(raw: Any, kind: str) -> Any:
    if raw is None:
        return None
    if isinstance(raw, datetime.datetime):
        return format_time(raw)
    if isinstance(raw, decimal.Decimal):
        return float(raw)
    if kind == "last":
        return json.loads(raw)
    return raw


def compute(
    definitions: Union[Definitions, str, os.PathLike[str]],
    inputs: Sequence[str],
    *,
    now: Union[str, datetime.datetime, None] = None,
    input_format: Optional[str] = None,
    threads: Optional[int] = None,
) -> AudienceResult:
    """Compute traits, attribution and audiences of every identified user in ``inputs``.

    ``definitions`` is a :class:`Definitions` or the path of a definitions file.
    ``inputs`` are JSON Lines files (gzip and Segment archives included),
    collector stores (``.db``/``.sqlite``) or Parquet files; ``input_format``
    forces one kind. ``now`` (ISO 8601 or datetime; default: the clock) is the
    moment every window and "days since" is measured from: events after it
    are ignored, so a fixed ``now`` gives the same result every time.
    """
    import duckdb

    if not isinstance(definitions, Definitions):
        definitions = load_definitions(definitions)
    moment = parse_now(now)
    started = time.perf_counter()
    connection = duckdb.connect(":memory:")
    try:
        connection.execute("SET TimeZone = 'UTC'")
        if threads is not None:
            connection.execute(f"SET threads = {int(threads)}")
        stats = load_events(connection, inputs, moment, input_format)
        result = _run(connection, definitions, moment, stats)
    finally:
        connection.close()
    result.elapsed_s = time.perf_counter() - started
    return result


def _execute(connection: Any, query: Query) -> Any:
    return connection.execute(query.text, query.params)


def _run(
    connection: Any, definitions: Definitions, now: datetime.datetime, stats: InputStats
) -> AudienceResult:
    _execute(connection, traits_sql(definitions, now))
    columns: dict[tuple[str, str], str] = {("trait", t.name): quote_ident(t.name) for t in definitions.traits}
    kinds = {t.name: t.kind for t in definitions.traits}
    keys = [t.name for t in definitions.traits]
    synced = [t.name for t in definitions.traits if t.sync]
    joins = Query()
    selects = ["c.*"]
    for index, attribution in enumerate(definitions.attributions):
        table = f"atb{index}"
        _execute(connection, attribution_sql(attribution, table, now))
        channels = list(attribution.channels or ())
        if not channels:
            rows = connection.execute(f"SELECT DISTINCT channel FROM {table} ORDER BY channel").fetchall()
            channels = [str(r[0]) for r in rows]
        pivot = Query().add("SELECT uid")
        names = []
        for channel in channels:
            key = attribution.prefix + channel
            names.append(key)
            pivot.add(
                f", COALESCE(max(share) FILTER (WHERE channel = ?), 0.0) AS {quote_ident(key)}", channel
            )
        pivot.add(f", first(channel ORDER BY share DESC, channel) AS {quote_ident(attribution.top_key)}")
        pivot.add(f" FROM {table} GROUP BY uid")
        _execute(connection, Query().add(f"CREATE OR REPLACE TABLE {table}w AS ").extend(pivot))
        names.append(attribution.top_key)
        for name in names:
            if ("trait", name) in columns:
                raise DefinitionError(
                    f"attribution key {name!r} is also another trait's name", definition=attribution.name
                )
            columns[("trait", name)] = quote_ident(name)
            selects.append(f"{table}w.{quote_ident(name)}")
            keys.append(name)
            if attribution.sync:
                synced.append(name)
        joins.add(f" LEFT JOIN {table}w ON {table}w.uid = c.uid")
    # identify traits that audiences read: each user's last non-null value
    identify_names = sorted(
        {
            name
            for a in definitions.audiences
            for source, name in a.condition.references()
            if source == "identify"
        }
    )
    if identify_names:
        idt = Query().add("CREATE OR REPLACE TABLE idt AS SELECT uid")
        for index, name in enumerate(identify_names):
            pointer = json_pointer(name)
            idt.add(
                f", arg_max(json_extract(traits, ?), (ts, rn)) FILTER (WHERE type = 'identify'"
                " AND json_type(json_extract(traits, ?)) IS DISTINCT FROM 'NULL'"
                f" AND json_extract(traits, ?) IS NOT NULL) AS i{index}",
                pointer,
                pointer,
                pointer,
            )
            # a name no trait can have (trait names are identifiers)
            columns[("identify", name)] = quote_ident(f"identify:{index}")
            selects.append(f"idt.i{index} AS {quote_ident(f'identify:{index}')}")
        _execute(connection, idt.add(" FROM ev GROUP BY uid"))
        joins.add(" LEFT JOIN idt ON idt.uid = c.uid")
    for audience in definitions.audiences:
        for ref in audience.condition.references():
            if ref not in columns:
                raise DefinitionError(
                    f"condition reads {ref[1]!r}, which no trait produces (no such channel in the data?)",
                    definition=audience.name,
                )
    _execute(
        connection,
        Query()
        .add(f"CREATE OR REPLACE TABLE wide AS SELECT {', '.join(selects)} FROM computed c")
        .extend(joins),
    )
    _execute(connection, audiences_sql(definitions.audiences, columns, "wide"))
    audience_keys = [a.key for a in definitions.audiences]
    keys.extend(audience_keys)
    synced.extend(audience_keys)
    trait_cols = [quote_ident(k) for k in keys if k not in audience_keys]
    select = ", ".join(
        ["w.uid", *(f"w.{c}" for c in trait_cols), *(f"m.{quote_ident(k)}" for k in audience_keys)]
    )
    rows = connection.execute(
        f"SELECT {select} FROM wide w JOIN membership m ON m.uid = w.uid ORDER BY w.uid"
    ).fetchall()
    users: dict[str, dict[str, Any]] = {}
    value_kinds = [kinds.get(k, "") for k in keys]
    for row in rows:
        users[row[0]] = {key: _value(raw, kind) for key, raw, kind in zip(keys, row[1:], value_kinds)}
    sizes = {key: sum(1 for v in users.values() if v[key] is True) for key in audience_keys}
    return AudienceResult(definitions, now, users, keys, synced, stats, 0.0, sizes)
