"""send_dataframe on a real local Spark session: each row once through faults, retries and re-runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pyspark = pytest.importorskip("pyspark")
if shutil.which("java") is None and not os.environ.get("CI"):  # CI installs Java (.ci/run) and must run these
    pytest.skip("Spark needs Java (Debian: apt-get install openjdk-17-jre-headless)", allow_module_level=True)

from pyspark import TaskContext  # noqa: E402
from pyspark.sql import DataFrame, SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402
from pyspark.sql import types as T  # noqa: E402

from segment_lite.collector import Collector, Faults  # noqa: E402
from segment_lite.importer import ImportConfigError, ImportOptions  # noqa: E402
from segment_lite.importer.ids import derive_row_id  # noqa: E402
from segment_lite.retry import RetryPolicy  # noqa: E402
from segment_lite.spark import send_dataframe  # noqa: E402

WRITE_KEY = "spark-test-key"
#: Retries that wait milliseconds, not seconds (the faults below are brief).
FAST_RETRIES = {"retry_policy": RetryPolicy(max_retries=8, base_delay_s=0.01, max_delay_s=0.05)}


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    """One local session for the module: 2 cores, a task may fail up to 4 times (local[N,F])."""
    session = (
        SparkSession.builder.master("local[2,4]")
        .appName("segment-lite-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.execution.pythonUDF.arrow.enabled", "false")
        # Python workers in another zone than UTC: timestamps must still arrive as the right instant.
        .config("spark.executorEnv.TZ", "America/New_York")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("FATAL")
    yield session
    session.stop()


def events(spark: SparkSession, n: int, partitions: int) -> DataFrame:
    """``n`` distinct track events shaped like JSON Lines rows, numbered by ``properties.n``."""
    return spark.range(0, n, numPartitions=partitions).select(
        F.lit("track").alias("type"),
        F.concat(F.lit("user-"), (F.col("id") % 97).cast("string")).alias("userId"),
        F.lit("Order Completed").alias("event"),
        (F.lit(1_700_000_000) + F.col("id")).cast("timestamp").alias("timestamp"),
        F.struct(F.col("id").alias("n"), (F.col("id") * 1.5).alias("total")).alias("properties"),
    )


def stored_once(collector: Collector, n: int) -> dict[int, dict[str, Any]]:
    """The stored messages by ``properties.n``: exactly one per row 0..n-1."""
    by_n: dict[int, dict[str, Any]] = {}
    for message in collector.messages():
        key = message["properties"]["n"]
        assert key not in by_n, f"row {key} stored under two messageIds"
        by_n[key] = message
    assert sorted(by_n) == list(range(n))
    return by_n


@pytest.mark.timeout(600)  # about a minute on two busy cores; the default 120 s is for unit tests
def test_100k_rows_through_injected_503s_arrive_once_and_a_rerun_adds_no_ids(spark: SparkSession) -> None:
    rows = 100_000
    df = events(spark, rows, partitions=4)
    with Collector(faults=Faults(fail_rate=0.25, seed=14)) as collector:
        summary = send_dataframe(df, write_key=WRITE_KEY, host=collector.url, client_options=FAST_RETRIES)
        assert summary.status == "completed", summary.error
        assert (summary.partitions, summary.rows_read, summary.delivered) == (4, rows, rows)
        assert summary.exit_code == 0
        stats = collector.stats
        assert stats.responses.get(503, 0) > 0  # the faults happened...
        assert stats.messages_stored == rows and stats.duplicates == 0  # ...and cost nothing
        by_n = stored_once(collector, rows)
        first = by_n[0]
        assert (
            first["originalTimestamp"] == "2023-11-14T22:13:20.000+00:00"
        )  # 1,700,000,000 s, whatever the zone
        content = {
            "event": "Order Completed",
            "properties": {"n": 0, "total": 0.0},
            "timestamp": "2023-11-14T22:13:20.000000Z",  # as Spark writes it, in UTC
            "type": "track",
            "userId": "user-0",
        }
        row_json = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
        assert first["messageId"] == derive_row_id(row_json)  # from the row alone, no partition number
        ids = collector.message_ids()

        # Again, cut into other partitions: the same ids, all deduplicated.
        again = send_dataframe(df.repartition(3), write_key=WRITE_KEY, host=collector.url)
        assert (again.status, again.partitions, again.delivered) == ("completed", 3, rows)
        assert collector.message_ids() == ids
        assert collector.stats.messages_stored == rows
        assert collector.stats.duplicates == rows


def test_a_task_failing_on_its_first_attempt_is_retried_without_loss(
    spark: SparkSession, tmp_path: Path
) -> None:
    rows = 20_000
    marker = tmp_path / "failed-once"

    def fail_first_attempt(user_id, n):  # type: ignore[no-untyped-def]  # hints would make pyspark guess a UDF kind
        context = TaskContext.get()
        # Halfway through partition 1, on its first attempt only: rows before were already sent.
        if context.partitionId() == 1 and context.attemptNumber() == 0 and n == 15_000:
            marker.write_text("failed")
            raise RuntimeError("a transient failure in the job's own code")
        return user_id

    flaky = F.udf(fail_first_attempt, T.StringType())
    df = events(spark, rows, partitions=2).withColumn("userId", flaky("userId", F.col("properties.n")))
    with Collector() as collector:
        summary = send_dataframe(df, write_key=WRITE_KEY, host=collector.url)
        assert marker.exists()  # the first attempt did fail
        assert summary.status == "completed", summary.error
        # The failed attempt's counts were discarded with it: each row is counted once.
        assert (summary.partitions, summary.rows_read, summary.delivered) == (2, rows, rows)
        stored_once(collector, rows)
        assert collector.stats.messages_stored == rows


def test_retries_exhausted_fail_the_task_and_the_retry_delivers(spark: SparkSession) -> None:
    rows = 1000
    df = events(spark, rows, partitions=1)
    one_retry = {"retry_policy": RetryPolicy(max_retries=1, base_delay_s=0.01, max_delay_s=0.01)}
    with Collector() as collector:
        collector.fail_next(2)  # the first batch fails twice: past its retry budget
        summary = send_dataframe(df, write_key=WRITE_KEY, host=collector.url, client_options=one_retry)
        assert summary.status == "completed", summary.error
        assert collector.stats.responses.get(503) == 2
        # Only a second attempt of the task could have delivered the batch the first one gave up on.
        assert (summary.partitions, summary.delivered) == (1, rows)
        stored_once(collector, rows)


def test_a_refused_write_key_fails_the_job_and_the_summary_says_so(spark: SparkSession) -> None:
    df = events(spark, 50, partitions=1)
    with Collector(write_keys=["the-right-key"]) as collector:
        summary = send_dataframe(df, write_key="wrong-key", host=collector.url)
        assert summary.status == "delivery_failed" and summary.exit_code == 4
        assert "401" in (summary.error or "") and "wrong-key" not in (summary.error or "")
        assert (summary.partitions, summary.delivered) == (0, 0)
        assert collector.stats.messages_stored == 0


PROPS = T.StructType([T.StructField("plan", T.StringType())])
SPEC = T.StructType(
    [
        T.StructField("type", T.StringType()),
        T.StructField("userId", T.StringType()),
        T.StructField("event", T.StringType()),
        T.StructField("messageId", T.StringType()),
        T.StructField("timestamp", T.StringType()),
        T.StructField("properties", PROPS),
        T.StructField("context", T.MapType(T.StringType(), T.StringType())),
    ]
)


def test_rejects_go_to_each_partitions_file_and_own_message_ids_are_kept(
    spark: SparkSession, tmp_path: Path
) -> None:
    data = []
    for i in range(40):
        event = None if i % 10 == 3 else "Paid"  # 4 rows without an event
        own = "own-id-7" if i == 7 else None
        data.append(("track", f"u{i}", event, own, "2024-03-01T12:00:00Z", (f"p{i}",), {"ip": "203.0.113.9"}))
    df = spark.createDataFrame(data, SPEC).repartition(2)
    rejects = tmp_path / "rejects"
    (rejects).mkdir()
    (rejects / "part-00009.rejects.jsonl").write_text("from an earlier run\n")  # not ours: left alone
    with Collector() as collector:
        summary = send_dataframe(
            df,
            write_key=WRITE_KEY,
            host=collector.url,
            rejects_path=str(rejects),
            integrations={"All": False, "Amplitude": True},
        )
        assert summary.status == "completed"
        assert (summary.delivered, summary.rejected) == (36, 4)
        assert summary.rejects == str(rejects)
        files = sorted(p.name for p in rejects.iterdir())
        assert all(not name.endswith(".tmp") for name in files)
        records = [
            json.loads(line)
            for name in files
            if name != "part-00009.rejects.jsonl"
            for line in (rejects / name).read_text().splitlines()
        ]
        assert sorted(r["row"]["userId"] for r in records) == ["u13", "u23", "u3", "u33"]
        assert {(r["stage"], r["field"]) for r in records} == {("validate", "event")}
        assert all(r["file"].startswith("part-0000") for r in records)
        stored = {m["userId"]: m for m in collector.messages()}
        assert stored["u7"]["messageId"] == "own-id-7"
        assert stored["u8"]["properties"] == {"plan": "p8"}
        assert stored["u8"]["context"]["ip"] == "203.0.113.9"
        assert stored["u8"]["integrations"] == {"All": False, "Amplitude": True}

        # The rerun finds nothing new to reject: each partition's file is replaced, not appended to.
        send_dataframe(df, write_key=WRITE_KEY, host=collector.url, rejects_path=str(rejects))
        again = [line for p in rejects.glob("part-0000[0-8]*") for line in p.read_text().splitlines()]
        assert len(again) == 4


def test_flat_columns_with_a_mapping_and_id_columns(spark: SparkSession) -> None:
    orders = spark.createDataFrame(
        [
            ("o-1", "u1", "Paid", "2024-04-01 10:00:00", "12.5"),
            ("o-2", "u2", "Paid", "2024-04-02 10:00:00", "7"),
            ("o-1", "u1", "Paid", "2024-04-01 10:00:00", "12.50"),  # the same order, re-exported
        ],
        ["order_id", "user_id", "action", "at", "amount"],
    )
    options = ImportOptions(
        type="track",
        mapping="userId=user_id,event=action,timestamp=at,properties.amount:float=amount,properties.order=order_id",
        timezone="Europe/Paris",
        id_columns=("order_id",),
    )
    with Collector() as collector:
        summary = send_dataframe(orders, options, write_key=WRITE_KEY, host=collector.url)
        assert summary.delivered == 3
        assert collector.stats.messages_stored == 2 and collector.stats.duplicates == 1
        paid = {m["properties"]["order"]: m for m in collector.messages()}
        assert paid["o-1"]["properties"]["amount"] == 12.5
        assert paid["o-2"]["originalTimestamp"] == "2024-04-02T08:00:00.000+00:00"  # Paris, CEST


def test_options_are_checked_on_the_driver(spark: SparkSession, tmp_path: Path) -> None:
    df = events(spark, 10, partitions=1)
    with pytest.raises(ImportConfigError, match="rejects_path"):
        send_dataframe(df, write_key=WRITE_KEY, rejects=str(tmp_path / "r.jsonl"))
    with pytest.raises(ImportConfigError, match="resume"):
        send_dataframe(df, write_key=WRITE_KEY, resume=True)
    with pytest.raises(ImportConfigError, match="progress"):  # refused by the partitions too: before them
        send_dataframe(df, write_key=WRITE_KEY, progress="plain")
    with pytest.raises(ImportConfigError, match="order_id are not columns"):
        send_dataframe(df, write_key=WRITE_KEY, id_columns=["order_id"])
    with pytest.raises(ImportConfigError, match="write key is required"):
        send_dataframe(df)
    with pytest.raises(ImportConfigError, match="unknown mapping target"):
        send_dataframe(df, write_key=WRITE_KEY, mapping="nope=x")
    dry = send_dataframe(df, dry_run=True)
    assert (dry.status, dry.dry_run, dry.sent, dry.delivered) == ("completed", True, 10, 0)


def test_without_pyspark_the_error_names_the_extra() -> None:
    code = "import sys; sys.modules['pyspark'] = None; import segment_lite.spark"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert 'pip install "segment-lite[spark]"' in result.stderr
    assert "FrameworkNotInstalledError" in result.stderr
