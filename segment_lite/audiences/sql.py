"""Definitions compiled to DuckDB SQL over the ``ev`` table; every value and name travels as a parameter.

The event table (built by ``inputs``) has one row per event: ``rn`` (input
order, to break timestamp ties), ``uid``, ``type``, ``event``, ``ts`` (UTC,
no zone), and the JSON columns ``props``, ``traits`` and ``ctx``. Property
names reach SQL only as JSON Pointer parameters (``/a/b``), values only as
parameters, and output columns only as validated identifiers, double-quoted.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from segment_lite.audiences.definitions import (
    AttributionDef,
    AudienceDef,
    Condition,
    Definitions,
    Filter,
    TraitDef,
)

__all__ = ["Query", "attribution_sql", "audiences_sql", "json_pointer", "quote_ident", "traits_sql"]

SECONDS_PER_DAY = 86400
#: Shares and time-decay credits are rounded so every engine gives the same digits.
SHARE_DECIMALS = 6
_UTM_NAMES = {
    "source": "utm_source",
    "medium": "utm_medium",
    "name": "utm_campaign",
    "term": "utm_term",
    "content": "utm_content",
}


@dataclass
class Query:
    """SQL text and its positional parameters, built left to right so the two stay in order."""

    parts: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def add(self, text: str, *params: Any) -> Query:
        """Append ``text`` whose ``?`` placeholders take ``params``."""
        if text.count("?") != len(params):
            raise AssertionError(f"placeholders and parameters differ in {text!r}")
        self.parts.append(text)
        self.params.extend(params)
        return self

    def extend(self, other: Query) -> Query:
        """Append another query's text and parameters."""
        self.parts.extend(other.parts)
        self.params.extend(other.params)
        return self

    @property
    def text(self) -> str:
        """The SQL text."""
        return "".join(self.parts)


def quote_ident(name: str) -> str:
    """A double-quoted SQL identifier (quotes inside doubled); names are validated before this, too."""
    return '"' + name.replace('"', '""') + '"'


def json_pointer(path: str) -> str:
    """``a.b`` -> ``/a/b`` (RFC 6901, so ``/`` and ``~`` in a name are escaped, not interpreted)."""
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in path.split("."))


def _filter(q: Query, f: Filter) -> None:
    pointer = json_pointer(f.property)
    if f.op in ("exists", "missing"):
        test = "IS NOT NULL" if f.op == "exists" else "IS NULL"
        q.add(
            f"(json_type(json_extract(props, ?)) IS DISTINCT FROM 'NULL' AND json_extract(props, ?) {test})",
            pointer,
            pointer,
        )
        return
    values = list(f.value) if f.op in ("in", "not_in") else [f.value]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric:
        expr = "TRY_CAST(json_extract_string(props, ?) AS DOUBLE)"
        shown: list[Any] = [float(v) for v in values]
    else:
        expr = "json_extract_string(props, ?)"
        shown = [("true" if v else "false") if isinstance(v, bool) else str(v) for v in values]
    if f.op in ("in", "not_in"):
        marks = ", ".join("?" for _ in shown)
        negate = "NOT " if f.op == "not_in" else ""
        q.add(f"COALESCE({expr} {negate}IN ({marks}), FALSE)", pointer, *shown)
    else:
        op = "=" if f.op == "==" else f.op
        q.add(f"COALESCE({expr} {op} ?, FALSE)", pointer, shown[0])


def _selection(trait: TraitDef, now: datetime.datetime) -> Query:
    """The WHERE test of a trait's events (TRUE when it takes every event)."""
    q = Query().add("(TRUE")
    if trait.types:
        q.add(" AND type IN (" + ", ".join("?" for _ in trait.types) + ")", *trait.types)
    if trait.events:
        q.add(" AND event IN (" + ", ".join("?" for _ in trait.events) + ")", *trait.events)
    if trait.within_days is not None:
        q.add(" AND ts > ?", now - datetime.timedelta(days=trait.within_days))
    for f in trait.filters:
        q.add(" AND ")
        _filter(q, f)
    return q.add(")")


def _aggregate(trait: TraitDef, now: datetime.datetime) -> Query:
    """The aggregate expression (over ``GROUP BY uid``) giving the trait's raw value."""
    sel = _selection(trait, now)
    q = Query()
    kind = trait.kind
    if trait.property is not None:
        pointer = json_pointer(trait.property)
    if kind == "count":
        return q.add("count(*) FILTER (WHERE ").extend(sel).add(")")
    if kind in ("first_time", "last_time"):
        return (
            q.add("min(ts)" if kind == "first_time" else "max(ts)")
            .add(" FILTER (WHERE ")
            .extend(sel)
            .add(")")
        )
    if kind == "distinct_count":
        return (
            q.add("count(DISTINCT json_extract_string(props, ?)) FILTER (WHERE ", pointer)
            .extend(sel)
            .add(")")
        )
    if kind in ("sum", "min", "max"):
        # DECIMAL sums are exact, so the result does not depend on the order rows are added in
        return (
            q.add(
                f"{kind}(TRY_CAST(json_extract_string(props, ?) AS DECIMAL(38, 6))) FILTER (WHERE ", pointer
            )
            .extend(sel)
            .add(")")
        )
    if kind == "last":
        return (
            q.add("arg_max(CAST(json_extract(props, ?) AS VARCHAR), (ts, rn)) FILTER (WHERE ", pointer)
            .extend(sel)
            .add(" AND json_type(json_extract(props, ?)) IS DISTINCT FROM 'NULL'", pointer)
            .add(" AND json_extract(props, ?) IS NOT NULL)", pointer)
        )
    if kind == "days_since":
        if trait.identify_trait is not None:
            ptr = json_pointer(trait.identify_trait)
            return q.add(
                "arg_max(timezone('UTC', TRY_CAST(json_extract_string(traits, ?) AS TIMESTAMPTZ)), (ts, rn))"
                " FILTER (WHERE type = 'identify'"
                " AND TRY_CAST(json_extract_string(traits, ?) AS TIMESTAMPTZ) IS NOT NULL)",
                ptr,
                ptr,
            )
        return (
            q.add("max(ts)" if trait.of == "last" else "min(ts)").add(" FILTER (WHERE ").extend(sel).add(")")
        )
    raise AssertionError(kind)  # pragma: no cover - kinds are validated


def _finish(trait: TraitDef, column: str, now: datetime.datetime) -> Query:
    """The trait's value from its raw aggregate ``column``."""
    q = Query()
    if trait.kind in ("count", "distinct_count"):
        return q.add(f"COALESCE({column}, 0)")
    if trait.kind == "days_since":
        return q.add(
            f"CAST(floor(epoch(CAST(? AS TIMESTAMP) - {column}) / {SECONDS_PER_DAY}) AS BIGINT)", now
        )
    if trait.kind in ("sum", "min", "max"):
        return q.add(f"CAST({column} AS DOUBLE)")
    return q.add(column)


def traits_sql(definitions: Definitions, now: datetime.datetime) -> Query:
    """``CREATE TABLE computed`` with one row per user and one column per computed trait."""
    q = Query().add("CREATE OR REPLACE TABLE computed AS SELECT uid")
    for index, trait in enumerate(definitions.traits):
        q.add(", ").extend(_finish(trait, f"r{index}", now)).add(f" AS {quote_ident(trait.name)}")
    q.add(" FROM (SELECT uid")
    for index, trait in enumerate(definitions.traits):
        q.add(", ").extend(_aggregate(trait, now)).add(f" AS r{index}")
    return q.add(" FROM ev GROUP BY uid)")


def channel_expr(field_name: str) -> Query:
    """A touch's channel: ``context.campaign.<field>``, else ``properties.utm_*``, else the page URL's UTM."""
    utm = _UTM_NAMES[field_name]
    return Query().add(
        "NULLIF(trim(regexp_replace(lower(COALESCE("
        "json_extract_string(ctx, ?), json_extract_string(props, ?),"
        " NULLIF(regexp_extract(json_extract_string(ctx, '/page/url'), ?, 1), ''))),"
        " '[^a-z0-9]+', '_', 'g'), '_'), '')",
        f"/campaign/{field_name}",
        "/" + utm,
        f"[?&]{utm}=([^&#]*)",
    )


def attribution_sql(attribution: AttributionDef, table: str, now: datetime.datetime) -> Query:
    """``CREATE TABLE <table>(uid, channel, share)``: each user's share of credit per channel."""
    q = Query().add(f"CREATE OR REPLACE TABLE {quote_ident(table)} AS WITH touches AS (SELECT uid, ts, rn, ")
    q.extend(channel_expr(attribution.channel)).add(" AS channel FROM ev WHERE type IN (")
    q.add(", ".join("?" for _ in attribution.touch_types) + ")", *attribution.touch_types)
    q.add("), conv AS (SELECT uid, ts AS cts, rn AS crn FROM ev WHERE type = 'track' AND event IN (")
    q.add(", ".join("?" for _ in attribution.conversions) + ")", *attribution.conversions)
    if attribution.within_days is not None:
        q.add(" AND ts > ?", now - datetime.timedelta(days=attribution.within_days))
    lookback_s = attribution.lookback_days * SECONDS_PER_DAY
    # touches at or before the conversion and within the lookback; the conversion itself may carry a campaign
    q.add(
        "), pairs AS (SELECT c.uid, c.crn, t.channel, t.ts, t.rn, c.cts,"
        " row_number() OVER (PARTITION BY c.uid, c.crn ORDER BY t.ts, t.rn) AS first_rank,"
        " row_number() OVER (PARTITION BY c.uid, c.crn ORDER BY t.ts DESC, t.rn DESC) AS last_rank,"
        " count(*) OVER (PARTITION BY c.uid, c.crn) AS n"
        " FROM conv c JOIN touches t ON t.uid = c.uid AND t.channel IS NOT NULL"
        " AND t.ts <= c.cts AND epoch(c.cts - t.ts) < ?)",
        lookback_s,
    )
    model = attribution.model
    if model == "first_touch":
        credit = Query().add("CASE WHEN first_rank = 1 THEN 1.0 ELSE 0.0 END")
    elif model == "last_touch":
        credit = Query().add("CASE WHEN last_rank = 1 THEN 1.0 ELSE 0.0 END")
    elif model == "linear":
        credit = Query().add("1.0 / n")
    else:
        half_life_s = attribution.half_life_days * SECONDS_PER_DAY
        credit = Query().add(
            "pow(2.0, -epoch(cts - ts) / ?)"
            " / sum(pow(2.0, -epoch(cts - ts) / ?)) OVER (PARTITION BY uid, crn)",
            half_life_s,
            half_life_s,
        )
    q.add(", credits AS (SELECT uid, crn, channel, ").extend(credit).add(" AS credit FROM pairs)")
    channel_col = "channel"
    if attribution.channels:
        listed = [c for c in attribution.channels if c != "other"]
        channel_col = (
            "CASE WHEN channel IN (" + ", ".join("?" for _ in listed) + ") THEN channel ELSE 'other' END"
        )
        q.add(f", mapped AS (SELECT uid, crn, {channel_col} AS channel, credit FROM credits)", *listed)
    else:
        q.add(", mapped AS (SELECT uid, crn, channel, credit FROM credits)")
    q.add(
        ", users AS (SELECT uid, count(DISTINCT crn) AS conversions FROM mapped GROUP BY uid)"
        " SELECT m.uid, m.channel, round(sum(m.credit) / any_value(u.conversions), ?) AS share"
        " FROM mapped m JOIN users u ON u.uid = m.uid GROUP BY m.uid, m.channel",
        SHARE_DECIMALS,
    )
    return q


def _leaf(condition: Condition, column: str, q: Query) -> None:
    op = condition.op
    if op in ("exists", "missing"):
        q.add(f"({column} IS {'NOT ' if op == 'exists' else ''}NULL)")
        return
    values = list(condition.value) if op in ("in", "not_in") else [condition.value]
    expr = column
    if condition.source == "identify":
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            expr = f"TRY_CAST(json_extract_string({column}, '$') AS DOUBLE)"
        else:
            expr = f"json_extract_string({column}, '$')"
            values = [("true" if v else "false") if isinstance(v, bool) else str(v) for v in values]
    if op in ("in", "not_in"):
        marks = ", ".join("?" for _ in values)
        q.add(f"COALESCE({expr} {'NOT ' if op == 'not_in' else ''}IN ({marks}), FALSE)", *values)
    else:
        sql_op = "=" if op == "==" else op
        q.add(f"COALESCE({expr} {sql_op} ?, FALSE)", values[0])


def condition_sql(condition: Condition, columns: dict[tuple[str, str], str], q: Query) -> None:
    """Append ``condition`` as a boolean SQL expression that is never NULL (unknown is false)."""
    if condition.op in ("all", "any"):
        joiner = " AND " if condition.op == "all" else " OR "
        q.add("(")
        for index, child in enumerate(condition.children):
            if index:
                q.add(joiner)
            condition_sql(child, columns, q)
        q.add(")")
    elif condition.op == "not":
        q.add("(NOT ")
        condition_sql(condition.children[0], columns, q)
        q.add(")")
    else:
        _leaf(condition, columns[(condition.source, condition.name)], q)


def audiences_sql(
    audiences: Sequence[AudienceDef], columns: dict[tuple[str, str], str], source_table: str
) -> Query:
    """``CREATE TABLE membership`` with one boolean column per audience, from ``source_table``'s columns."""
    q = Query().add("CREATE OR REPLACE TABLE membership AS SELECT uid")
    for audience in audiences:
        q.add(", ")
        condition_sql(audience.condition, columns, q)
        q.add(f" AS {quote_ident(audience.key)}")
    return q.add(f" FROM {quote_ident(source_table)}")
