"""Send a Spark DataFrame to Segment: one blocking client per partition, each row delivered once.

::

    from segment_lite.spark import send_dataframe

    summary = send_dataframe(spark.table("events_2023"), write_key=WRITE_KEY)
    print(summary.format())

Rows are shaped like the JSON Lines import (columns ``type``, ``userId``,
``anonymousId``, ``event``, ``timestamp``, ``properties``/``traits``/``context``
as structs or maps, ...), or mapped from flat columns with ``mapping=``. Each
row without a ``messageId`` column value gets one derived from its content
(and ``id_columns``/``id_salt``), never from partition or task numbers: a
retried or speculative task, or a whole re-run, sends the same ids, and Segment
deduplicates them.

Each partition is sent by :func:`segment_lite.importer.runner.send_records`
with its own client (``on_full="block"``), flushed before the task ends. A
delivery failure that outlasts the retry budget raises, so Spark retries the
task; rows the server rejects for good go to the partition's rejects file
under ``rejects_path``; the counts come back to the driver through an
accumulator, which Spark applies once per successful task. Needs the
``[spark]`` extra (pyspark).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from segment_lite.errors import FrameworkNotInstalledError
from segment_lite.importer.errors import ImportConfigError, ImportDeliveryError
from segment_lite.importer.options import ImportOptions
from segment_lite.importer.runner import FILE_ONLY_OPTIONS, send_records
from segment_lite.importer.sources import RecordSource, json_loads
from segment_lite.importer.summary import ImportSummary

try:
    from pyspark import TaskContext
    from pyspark.accumulators import AccumulatorParam
    from pyspark.sql import functions
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
    if (exc.name or "").partition(".")[0] != "pyspark":
        raise
    raise FrameworkNotInstalledError(__name__, "PySpark", "spark") from None

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["REJECTS_FILE", "send_dataframe"]

#: Name of a partition's rejects file under ``rejects_path`` (``part-00007.rejects.jsonl``).
REJECTS_FILE = "part-{partition:05d}.rejects.jsonl"
#: Options that have no meaning for a DataFrame: those each partition's send_records refuses, checked
#: on the driver before any task starts, and ``rejects`` (a DataFrame takes ``rejects_path``).
_REFUSED = ("rejects", *FILE_ONLY_OPTIONS)

Counts = dict[str, int]


class _CountsParam(AccumulatorParam[Counts]):  # type: ignore[misc]
    """Adds count dicts key by key (the accumulator of a DataFrame send)."""

    def zero(self, value: Counts) -> Counts:
        """An empty count."""
        return {}

    def addInPlace(self, value1: Counts, value2: Counts) -> Counts:
        """``value1 += value2``, key by key."""
        for key, count in value2.items():
            value1[key] = value1.get(key, 0) + count
        return value1


# -- rows: one JSON text per row, made by Spark ------------------------------------------------

#: How ``to_json`` writes timestamps: UTC with an offset, whatever the session's zone, so the
#: instant is exact and a row's text (hence its derived messageId) is the same on every cluster.
_JSON_OPTIONS = {"timestampFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX", "timeZone": "UTC"}
_JSON_COLUMN = "segment_lite_row"


def _as_json_rows(df: DataFrame) -> DataFrame:
    """``df`` with each row as one JSON object text: Spark's JSON writer is several times faster than
    handing pyspark ``Row`` objects to Python, and writes every type (timestamps above all) exactly."""
    row = functions.struct(*[df[name] for name in df.columns])
    return df.select(functions.to_json(row, _JSON_OPTIONS).alias(_JSON_COLUMN))


# -- one partition, on an executor ---------------------------------------------------------


@dataclass(frozen=True)
class _PartitionJob:
    """What every partition's task needs: shipped to the executors once, with the function."""

    options: ImportOptions
    rejects_dir: Optional[str]


def _rejects_paths(rejects_dir: str, partition: int, attempt_id: int) -> tuple[str, str]:
    final = os.path.join(rejects_dir, REJECTS_FILE.format(partition=partition))
    return f"{final}.attempt-{attempt_id}.tmp", final


def _send_partition(rows: Iterable[Any], *, job: _PartitionJob, counts: Any) -> None:
    """Send one partition; raise (so Spark retries the task) when delivery failed."""
    context = TaskContext.get()
    partition = context.partitionId() if context is not None else 0
    attempt_id = context.taskAttemptId() if context is not None else 0
    temp = final = None
    options = job.options
    if job.rejects_dir is not None:
        # Each attempt writes its own file, renamed when the task succeeds: a failed or
        # speculative attempt never leaves a half-written or doubled rejects file.
        temp, final = _rejects_paths(job.rejects_dir, partition, attempt_id)
        options = ImportOptions.build(options, {"rejects": temp}, "send_dataframe")
    source = RecordSource(
        (json_loads(row[0]) for row in rows),
        None,
        path=f"part-{partition:05d}",
        id_columns=options.id_columns,
    )
    try:
        summary = send_records(source, options, raise_on_failure=True)
    except BaseException:
        if temp is not None:
            _remove(temp)
        raise
    if temp is not None and final is not None:
        if os.path.exists(temp):
            os.replace(temp, final)
        else:
            _remove(final)  # left by an earlier send of this DataFrame
    counts.add(
        {
            "partitions": 1,
            "rows_read": summary.rows_read,
            "sent": summary.sent,
            "delivered": summary.delivered,
            "rejected": summary.rejected,
            "rejected_by_server": summary.rejected_by_server,
            "undelivered": summary.undelivered,
            "filtered": summary.filtered,
            "stopped_max_errors": int(summary.status == "max_errors"),
        }
    )


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


# -- the driver ----------------------------------------------------------------------------


def send_dataframe(
    df: DataFrame,
    options: Optional[ImportOptions] = None,
    *,
    write_key: Optional[str] = None,
    host: Optional[str] = None,
    region: Optional[str] = None,
    rejects_path: Optional[str] = None,
    id_columns: Optional[Sequence[str]] = None,
    **overrides: Any,
) -> ImportSummary:
    """Send every row of ``df`` to Segment, each once; returns an :class:`ImportSummary` of all partitions.

    Options are those of the import (an :class:`ImportOptions` and/or keywords:
    ``type``, ``mapping``, ``constants``, ``from_archive``, ``integrations``,
    ``allow_now``, ``timezone``, ``id_salt``, ``max_errors``, ``fail_on_rejects``,
    ``dry_run``, ``threads``, ``max_retries``, ``gzip``, ``client_options``);
    the file options (``checkpoint``, ``resume``, ``shard``, ...) are refused.
    They apply per partition: ``threads`` sender threads for each, and a
    partition that rejects more than ``max_errors`` rows stops sending (the
    summary then says ``max_errors``).

    ``rejects_path`` is a directory (shared by the executors, e.g. on DBFS or
    NFS): each partition with rejected rows leaves ``part-NNNNN.rejects.jsonl``
    there. ``id_columns`` names the columns a row's derived messageId comes
    from (default: all of them); identical values mean the same event.

    Delivery that fails past the retry budget fails the task, and Spark retries
    it (``spark.task.maxFailures``); the retry sends the same messageIds. If the
    job fails for that reason, the summary says ``delivery_failed`` with the
    error, counting the partitions that succeeded; any other job failure is
    raised. Raises ``ImportConfigError`` for unusable options.
    """
    for name, value in (
        ("write_key", write_key),
        ("host", host),
        ("region", region),
        ("id_columns", id_columns),
    ):
        if value is not None:
            overrides[name] = value
    opts = ImportOptions.build(options, overrides, "send_dataframe")
    if opts.rejects not in (None, False):
        raise ImportConfigError(
            "send_dataframe: pass rejects_path=DIRECTORY (one rejects file per partition)"
        )
    opts.refuse(_REFUSED, "send_dataframe", "they concern files; a DataFrame is sent partition by partition")
    if not opts.dry_run and not opts.write_key:
        raise ImportConfigError("send_dataframe: a write key is required (write_key=...)")
    opts.row_options()  # a bad type, mapping or zone fails here, on the driver
    columns = set(df.columns)
    missing = [name for name in opts.id_columns or () if name not in columns]
    if missing:
        raise ImportConfigError(
            f"send_dataframe: id_columns {', '.join(missing)} are not columns of the DataFrame"
            f" ({', '.join(df.columns)})"
        )
    if rejects_path is not None:
        os.makedirs(rejects_path, exist_ok=True)
    job = _PartitionJob(opts, rejects_path)
    counts = df.sparkSession.sparkContext.accumulator({}, _CountsParam())
    started = time.monotonic()
    status, error = "completed", None
    try:
        _as_json_rows(df).foreachPartition(functools.partial(_send_partition, job=job, counts=counts))
    except Exception as exc:
        text = str(exc)
        marker = ImportDeliveryError.__name__ + ": "
        if marker not in text:
            raise
        status = "delivery_failed"
        error = text[text.index(marker) + len(marker) :].splitlines()[0]
    total: Counts = dict(counts.value)
    if status == "completed" and total.get("stopped_max_errors"):
        status = "max_errors"
        stopped = total["stopped_max_errors"]
        error = f"{stopped} partition(s) stopped after more than {opts.max_errors} rejected rows"
    return ImportSummary(
        files=[],
        rows_read=total.get("rows_read", 0),
        sent=total.get("sent", 0),
        delivered=total.get("delivered", 0),
        rejected=total.get("rejected", 0),
        rejected_by_server=total.get("rejected_by_server", 0),
        undelivered=total.get("undelivered", 0),
        filtered=total.get("filtered", 0),
        elapsed_s=time.monotonic() - started,
        dry_run=opts.dry_run,
        status=status,
        error=error,
        rejects=rejects_path,
        partitions=total.get("partitions", 0),
        fail_on_rejects=opts.fail_on_rejects,
    )
