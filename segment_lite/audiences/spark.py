"""The same traits, attribution and audiences computed on a Spark DataFrame, for data beyond one machine.

Needs ``pip install "segment-lite[spark,audiences]"``. Results equal DuckDB's
(``compute``) value for value: the same selection, the same tie-breaking (input
order), exact decimal sums and shares rounded to the same digits. Names and
values reach Spark through the DataFrame API (map look-ups and literals), never
through SQL text.
"""

from __future__ import annotations

import datetime
import decimal
import json
import time
from collections.abc import Sequence
from typing import Any, Optional, Union

from segment_lite.audiences.compute import AudienceResult, parse_now
from segment_lite.audiences.definitions import (
    AttributionDef,
    Condition,
    Definitions,
    Filter,
    TraitDef,
    load_definitions,
)
from segment_lite.audiences.errors import AudienceInputError, DefinitionError
from segment_lite.audiences.inputs import InputStats
from segment_lite.audiences.sql import SECONDS_PER_DAY, SHARE_DECIMALS

__all__ = ["compute_spark"]

_UTM = {
    "source": "utm_source",
    "medium": "utm_medium",
    "name": "utm_campaign",
    "term": "utm_term",
    "content": "utm_content",
}
_TEXT = ("userId", "type", "event", "timestamp", "receivedAt")
_JSON = ("properties", "traits", "context")


def _at(moment: datetime.datetime) -> Any:
    """A naive-UTC moment as a Spark timestamp literal (made aware, so the driver's zone plays no part)."""
    return _F().lit(moment.replace(tzinfo=datetime.timezone.utc))


def _F() -> Any:
    from pyspark.sql import functions

    return functions


def _text_map() -> Any:
    from pyspark.sql import types

    return types.MapType(types.StringType(), types.StringType())


def _text_at(column: Any, path: str) -> Any:
    """The value at ``path`` (dots: nesting) of a JSON text column, as DuckDB's json_extract_string."""
    F = _F()
    current = column
    for part in path.split("."):
        current = F.element_at(F.from_json(current, _text_map()), F.lit(part))
    return current


def _json_at(column: Any, path: str) -> Any:
    """The JSON text of the value at ``path`` (None when absent or JSON null)."""
    from pyspark.sql import types

    F = _F()
    parts = path.split(".")
    current = column
    for part in parts[:-1]:
        current = F.element_at(F.from_json(current, _text_map()), F.lit(part))
    variant_map = types.MapType(types.StringType(), types.VariantType())
    text = F.to_json(F.element_at(F.from_json(current, variant_map), F.lit(parts[-1])))
    return F.when(text != F.lit("null"), text)


def _events(spark: Any, data: Any, now: datetime.datetime, stats: InputStats) -> Any:
    from pyspark.sql import types

    F = _F()
    if isinstance(data, (list, tuple)):
        schema = types.StructType([types.StructField(n, types.StringType()) for n in (*_TEXT, *_JSON)])
        frames = [spark.read.schema(schema).json(path) for path in data]
        if not frames:
            raise AudienceInputError("no inputs")
        # input index in the high bits, then the row's position: ties break in input order, as in DuckDB
        df: Any = None
        for index, frame in enumerate(frames):
            part = frame.withColumn("rn", F.lit(index) * F.lit(1 << 54) + F.monotonically_increasing_id())
            df = part if df is None else df.unionByName(part)
    else:
        df = data
        present = set(df.columns)
        cols = []
        for name in _TEXT:
            cols.append(
                (F.col(name).cast("string") if name in present else F.lit(None).cast("string")).alias(name)
            )
        for name in _JSON:
            if name not in present:
                cols.append(F.lit(None).cast("string").alias(name))
            elif dict(df.dtypes)[name] == "string":
                cols.append(F.col(name))
            else:
                cols.append(F.to_json(F.col(name)).alias(name))
        df = df.select(*cols).withColumn("rn", F.monotonically_increasing_id())
    staged = df.select(
        "rn",
        F.nullif(F.col("userId"), F.lit("")).alias("uid"),
        "type",
        "event",
        F.coalesce(F.try_to_timestamp(F.col("timestamp")), F.try_to_timestamp(F.col("receivedAt"))).alias(
            "ts"
        ),
        F.col("properties").alias("props"),
        "traits",
        F.col("context").alias("ctx"),
    ).cache()
    now_lit = _at(now)
    row = staged.agg(
        F.count(F.lit(1)),
        F.count(F.when(F.col("uid").isNull(), 1)),
        F.count(F.when(F.col("uid").isNotNull() & F.col("ts").isNull(), 1)),
        F.count(F.when(F.col("uid").isNotNull() & (F.col("ts") > now_lit), 1)),
    ).collect()[0]
    stats.read = int(row[0])
    for reason, n in zip(("no_user_id", "no_timestamp", "after_now"), row[1:]):
        if n:
            stats.skipped[reason] = int(n)
    ev = staged.where(F.col("uid").isNotNull() & F.col("ts").isNotNull() & (F.col("ts") <= now_lit)).cache()
    stats.used = ev.count()
    return ev


def _filter(f: Filter) -> Any:
    F = _F()
    if f.op in ("exists", "missing"):
        value = _json_at(F.col("props"), f.property)
        return value.isNotNull() if f.op == "exists" else value.isNull()
    values = list(f.value) if f.op in ("in", "not_in") else [f.value]
    text = _text_at(F.col("props"), f.property)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        shown: list[Any] = [float(v) for v in values]
        expr = text.try_cast("double")
    else:
        expr, shown = text, [("true" if v else "false") if isinstance(v, bool) else str(v) for v in values]
    if f.op == "in":
        test = expr.isin(shown)
    elif f.op == "not_in":
        test = ~expr.isin(shown)
    else:
        test = {
            "==": expr == F.lit(shown[0]),
            "!=": expr != F.lit(shown[0]),
            ">": expr > F.lit(shown[0]),
            ">=": expr >= F.lit(shown[0]),
            "<": expr < F.lit(shown[0]),
            "<=": expr <= F.lit(shown[0]),
        }[f.op]
    return F.coalesce(test, F.lit(False))


def _selection(trait: TraitDef, now: datetime.datetime) -> Any:
    F = _F()
    test = F.lit(True)
    if trait.types:
        test = test & F.col("type").isin(list(trait.types))
    if trait.events:
        test = test & F.col("event").isin(list(trait.events))
    if trait.within_days is not None:
        test = test & (F.col("ts") > _at(now - datetime.timedelta(days=trait.within_days)))
    for f in trait.filters:
        test = test & _filter(f)
    return F.coalesce(test, F.lit(False))


def _order() -> Any:
    F = _F()
    return F.struct(F.col("ts"), F.col("rn"))


def _aggregate(trait: TraitDef, now: datetime.datetime) -> Any:
    F = _F()
    sel = _selection(trait, now)
    kind = trait.kind
    if kind == "count":
        return F.count(F.when(sel, 1))
    if kind == "first_time" or (
        kind == "days_since" and trait.identify_trait is None and trait.of == "first"
    ):
        return F.min(F.when(sel, F.col("ts")))
    if kind in ("last_time", "days_since") and trait.identify_trait is None:
        return F.max(F.when(sel, F.col("ts")))
    if kind == "days_since":
        assert trait.identify_trait is not None
        moment = F.try_to_timestamp(_text_at(F.col("traits"), trait.identify_trait))
        keep = (F.col("type") == F.lit("identify")) & moment.isNotNull()
        return F.max_by(F.when(keep, moment), F.when(keep, _order()))
    assert trait.property is not None
    text = _text_at(F.col("props"), trait.property)
    if kind == "distinct_count":
        return F.count_distinct(F.when(sel, text))
    if kind in ("sum", "min", "max"):
        number = F.when(sel, text.try_cast("decimal(38,6)"))
        return {"sum": F.sum, "min": F.min, "max": F.max}[kind](number)
    if kind == "last":
        value = _json_at(F.col("props"), trait.property)
        keep = sel & value.isNotNull()
        return F.max_by(F.when(keep, value), F.when(keep, _order()))
    raise AssertionError(kind)  # pragma: no cover


def _finish(trait: TraitDef, column: Any, now: datetime.datetime) -> Any:
    F = _F()
    if trait.kind in ("count", "distinct_count"):
        return F.coalesce(column, F.lit(0))
    if trait.kind == "days_since":
        seconds = (F.unix_micros(_at(now)) - F.unix_micros(column)) / F.lit(1_000_000.0)
        return F.floor(seconds / F.lit(float(SECONDS_PER_DAY))).cast("long")
    if trait.kind in ("first_time", "last_time"):
        return F.date_format(column, "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'")
    return column


def _channel(field_name: str) -> Any:
    F = _F()
    utm = _UTM[field_name]
    url = _text_at(F.col("ctx"), "page.url")
    raw = F.coalesce(
        _text_at(F.col("ctx"), f"campaign.{field_name}"),
        _text_at(F.col("props"), utm),
        F.nullif(F.regexp_extract(url, f"[?&]{utm}=([^&#]*)", 1), F.lit("")),
    )
    cleaned = F.regexp_replace(F.lower(raw), "[^a-z0-9]+", "_")
    return F.nullif(F.btrim(cleaned, F.lit("_")), F.lit(""))


def _attribution(ev: Any, attribution: AttributionDef, now: datetime.datetime) -> Any:
    """(uid, channel, share) rows, as ``sql.attribution_sql`` makes them."""
    from pyspark.sql import Window

    F = _F()
    touches = ev.where(F.col("type").isin(list(attribution.touch_types))).select(
        F.col("uid").alias("tuid"),
        F.col("ts").alias("tts"),
        F.col("rn").alias("trn"),
        _channel(attribution.channel).alias("channel"),
    )
    conv = ev.where((F.col("type") == F.lit("track")) & F.col("event").isin(list(attribution.conversions)))
    if attribution.within_days is not None:
        conv = conv.where(F.col("ts") > _at(now - datetime.timedelta(days=attribution.within_days)))
    conv = conv.select("uid", F.col("ts").alias("cts"), F.col("rn").alias("crn"))
    age_s = (F.unix_micros(F.col("cts")) - F.unix_micros(F.col("tts"))) / F.lit(1_000_000.0)
    pairs = conv.join(
        touches,
        (touches.tuid == conv.uid)
        & touches.channel.isNotNull()
        & (F.col("tts") <= F.col("cts"))
        & (age_s < F.lit(attribution.lookback_days * SECONDS_PER_DAY)),
    ).withColumn("age_s", age_s)
    group = Window.partitionBy("uid", "crn")
    if attribution.model == "first_touch":
        rank = F.row_number().over(group.orderBy(F.col("tts"), F.col("trn")))
        credit = F.when(rank == 1, F.lit(1.0)).otherwise(F.lit(0.0))
    elif attribution.model == "last_touch":
        rank = F.row_number().over(group.orderBy(F.col("tts").desc(), F.col("trn").desc()))
        credit = F.when(rank == 1, F.lit(1.0)).otherwise(F.lit(0.0))
    elif attribution.model == "linear":
        credit = F.lit(1.0) / F.count(F.lit(1)).over(group)
    else:
        half_life_s = F.lit(attribution.half_life_days * SECONDS_PER_DAY)
        weight = F.pow(F.lit(2.0), -F.col("age_s") / half_life_s)
        credit = weight / F.sum(weight).over(group)
    credits = pairs.select("uid", "crn", "channel", credit.alias("credit"))
    if attribution.channels:
        listed = [c for c in attribution.channels if c != "other"]
        credits = credits.withColumn(
            "channel", F.when(F.col("channel").isin(listed), F.col("channel")).otherwise(F.lit("other"))
        )
    users = credits.groupBy("uid").agg(F.count_distinct("crn").alias("conversions"))
    return (
        credits.join(users, "uid")
        .groupBy("uid", "channel")
        .agg(F.round(F.sum("credit") / F.first("conversions"), SHARE_DECIMALS).alias("share"))
    )


def _leaf(condition: Condition, column: Any) -> Any:
    F = _F()
    op = condition.op
    if op in ("exists", "missing"):
        return column.isNotNull() if op == "exists" else column.isNull()
    values = list(condition.value) if op in ("in", "not_in") else [condition.value]
    expr = column
    if condition.source == "identify":
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            expr = column.try_cast("double")
        else:
            values = [("true" if v else "false") if isinstance(v, bool) else str(v) for v in values]
    if op == "in":
        test = expr.isin(values)
    elif op == "not_in":
        test = ~expr.isin(values)
    else:
        v = F.lit(values[0])
        test = {
            "==": expr == v,
            "!=": expr != v,
            ">": expr > v,
            ">=": expr >= v,
            "<": expr < v,
            "<=": expr <= v,
        }[op]
    return F.coalesce(test, F.lit(False))


def _condition(condition: Condition, columns: dict[tuple[str, str], Any]) -> Any:
    F = _F()
    if condition.op in ("all", "any"):
        parts = [_condition(c, columns) for c in condition.children]
        out = parts[0]
        for part in parts[1:]:
            out = (out & part) if condition.op == "all" else (out | part)
        return F.coalesce(out, F.lit(False))
    if condition.op == "not":
        return ~_condition(condition.children[0], columns)
    return _leaf(condition, columns[(condition.source, condition.name)])


def _python(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if isinstance(value, decimal.Decimal):
        return float(value)
    if kind == "last":
        return json.loads(value)
    return value


def compute_spark(
    definitions: Union[Definitions, str],
    data: Union[Sequence[str], Any],
    *,
    now: Union[str, datetime.datetime, None] = None,
    spark: Optional[Any] = None,
) -> AudienceResult:
    """:func:`~segment_lite.audiences.compute` on Spark: ``data`` is JSON Lines paths or a DataFrame.

    A DataFrame needs ``userId``, ``type``, ``event`` and ``timestamp`` columns
    (``receivedAt`` optional) and ``properties``, ``traits``, ``context`` as
    JSON text or structs/maps. ``spark`` defaults to the active session. The
    session time zone should be UTC (``spark.sql.session.timeZone``).
    """
    import pyspark
    from pyspark.sql import SparkSession

    if int(pyspark.__version__.split(".")[0]) < 4:
        raise AudienceInputError(f"compute_spark needs PySpark 4.0 or later (found {pyspark.__version__})")
    if not isinstance(definitions, Definitions):
        definitions = load_definitions(definitions)
    moment = parse_now(now)
    session = spark or SparkSession.getActiveSession() or SparkSession.builder.getOrCreate()
    started = time.perf_counter()
    # strings without a zone, and the formatted times, are UTC whatever the session's zone
    zone = str(session.conf.get("spark.sql.session.timeZone") or "UTC")
    session.conf.set("spark.sql.session.timeZone", "UTC")
    try:
        result = _compute(session, definitions, data, moment)
    finally:
        session.conf.set("spark.sql.session.timeZone", zone)
    result.elapsed_s = time.perf_counter() - started
    return result


def _compute(session: Any, definitions: Definitions, data: Any, moment: datetime.datetime) -> AudienceResult:
    F = _F()
    stats = InputStats()
    ev = _events(session, data, moment, stats)
    aggregates = [_aggregate(t, moment).alias(f"r{i}") for i, t in enumerate(definitions.traits)]
    raw = ev.groupBy("uid").agg(*aggregates) if aggregates else ev.select("uid").distinct()
    wide = raw.select(
        "uid", *(_finish(t, F.col(f"r{i}"), moment).alias(t.name) for i, t in enumerate(definitions.traits))
    )
    columns: dict[tuple[str, str], Any] = {
        ("trait", t.name): F.col(f"`{t.name}`") for t in definitions.traits
    }
    keys = [t.name for t in definitions.traits]
    synced = [t.name for t in definitions.traits if t.sync]
    kinds = {t.name: t.kind for t in definitions.traits}
    for index, attribution in enumerate(definitions.attributions):
        shares = _attribution(ev, attribution, moment).cache()
        channels = list(attribution.channels or ())
        if not channels:
            channels = sorted(r[0] for r in shares.select("channel").distinct().collect())
        from pyspark.sql import Window

        best = Window.partitionBy("uid").orderBy(F.col("share").desc(), F.col("channel"))
        top = (
            shares.withColumn("rank", F.row_number().over(best))
            .where(F.col("rank") == 1)
            .select(F.col("uid").alias(f"tuid{index}"), F.col("channel").alias(attribution.top_key))
        )
        pivot = shares.groupBy(F.col("uid").alias(f"puid{index}")).agg(
            *(
                F.coalesce(F.max(F.when(F.col("channel") == F.lit(c), F.col("share"))), F.lit(0.0)).alias(
                    attribution.prefix + c
                )
                for c in channels
            )
        )
        names = [attribution.prefix + c for c in channels] + [attribution.top_key]
        for name in names:
            if ("trait", name) in columns:
                raise DefinitionError(
                    f"attribution key {name!r} is also another trait's name", definition=attribution.name
                )
            columns[("trait", name)] = F.col(f"`{name}`")
            keys.append(name)
            if attribution.sync:
                synced.append(name)
        wide = wide.join(pivot, wide.uid == pivot[f"puid{index}"], "left").drop(f"puid{index}")
        wide = wide.join(top, wide.uid == top[f"tuid{index}"], "left").drop(f"tuid{index}")
    identify_names = sorted(
        {n for a in definitions.audiences for s, n in a.condition.references() if s == "identify"}
    )
    if identify_names:
        aggs = []
        for index, name in enumerate(identify_names):
            value = _text_at(F.col("traits"), name)
            keep = (F.col("type") == F.lit("identify")) & value.isNotNull()
            aggs.append(F.max_by(F.when(keep, value), F.when(keep, _order())).alias(f"identify_{index}"))
            columns[("identify", name)] = F.col(f"identify_{index}")
        idt = ev.groupBy(F.col("uid").alias("iuid")).agg(*aggs)
        wide = wide.join(idt, wide.uid == idt.iuid, "left").drop("iuid")
    for audience in definitions.audiences:
        for ref in audience.condition.references():
            if ref not in columns:
                raise DefinitionError(
                    f"condition reads {ref[1]!r}, which no trait produces (no such channel in the data?)",
                    definition=audience.name,
                )
    audience_keys = [a.key for a in definitions.audiences]
    out = wide.select(
        "uid",
        *(F.col(f"`{k}`") for k in keys),
        *(_condition(a.condition, columns).alias(a.key) for a in definitions.audiences),
    )
    keys.extend(audience_keys)
    synced.extend(audience_keys)
    users: dict[str, dict[str, Any]] = {}
    value_kinds = [kinds.get(k, "") for k in keys]
    for row in sorted(out.collect(), key=lambda r: r[0]):
        users[row[0]] = {k: _python(v, kind) for k, v, kind in zip(keys, row[1:], value_kinds)}
    sizes = {key: sum(1 for v in users.values() if v[key] is True) for key in audience_keys}
    ev.unpersist()
    return AudienceResult(definitions, moment, users, keys, synced, stats, 0.0, sizes)
