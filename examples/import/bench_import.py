"""Measure ``segment-lite import`` against the local collector, next to the client's own throughput.

Run from the repository root::

    pip install ".[spark]"                    # pyspark, for --spark (Spark needs Java 17)
    python examples/import/bench_import.py --rows 100000 --spark 2

Each measurement gets a fresh collector in its own process (so the server's
work does not share the importer's interpreter) and reports messages per
second delivered, counted from the start of the run to the moment the last
message is confirmed:

* ``client``: ``Client.track`` called with arguments prepared beforehand (the
  rows already parsed), using the importer's client settings; this is the
  client's own end-to-end throughput, the ceiling for an import.
* ``import``: ``run_import`` on the JSON Lines file: reading, JSON parsing,
  timestamp parsing, derived messageIds, checkpoints every 5,000 rows.
* ``dry run``: ``run_import(dry_run=True)``: everything but sending.
* ``spark``: with ``--spark N``, ``segment_lite.spark.send_dataframe`` on a
  ``local[N]`` session reading the same file (Spark parses the JSON with a
  given schema, split into N partitions); the session starts before the clock.

``--sink counting`` replaces the collector with ``benchmarks/sink.py``, which
only counts messages by messageId: the client side's own ceiling.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from segment_lite import Client  # noqa: E402
from segment_lite.importer import CLIENT_DEFAULTS, derive_message_id, open_source, run_import  # noqa: E402

SERVER = """
import sys
from segment_lite.collector import Collector
collector = Collector(keep_requests=100).start()
print(collector.port, flush=True)
sys.stdin.read()
print(collector.store.count(), flush=True)
collector.stop()
"""


class ServerProcess:
    """A collector in a child process; ``stop()`` returns how many unique messages it stored."""

    def __init__(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        assert self.process.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.process.stdout.readline())}"

    def stop(self) -> int:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        stored = int(self.process.stdout.readline())
        self.process.wait(10)
        return stored


class SinkProcess:
    """benchmarks/sink.py in a child process: counts messages by messageId, stores nothing."""

    def __init__(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.sink", "--write-key", "bench-key"],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=str(ROOT),
        )
        assert self.process.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.process.stdout.readline().split()[1])}"

    def stop(self) -> int:
        import urllib.request

        with urllib.request.urlopen(self.url + "/stats") as answer:
            unique = int(json.load(answer)["unique"])
        self.process.terminate()
        self.process.wait(10)
        return unique


SINKS: dict[str, Any] = {"collector": ServerProcess, "counting": SinkProcess}
SPARK_SCHEMA = (
    "type STRING, userId STRING, event STRING, timestamp STRING,"
    " properties STRUCT<product_id: STRING, name: STRING, price: DOUBLE, quantity: BIGINT,"
    " in_stock: BOOLEAN, tags: ARRAY<STRING>,"
    " dimensions: STRUCT<width_cm: DOUBLE, depth_cm: DOUBLE, color: STRING>, row: BIGINT>,"
    " context STRUCT<ip: STRING, page: STRUCT<path: STRING>>"
)


def make_rows(n: int) -> list[dict[str, Any]]:
    """Track rows like benchmarks/workload.py: eight properties, a context, an ISO timestamp."""
    start = datetime.datetime(2024, 5, 17, 9, 30, tzinfo=datetime.timezone.utc)
    rows = []
    for i in range(n):
        when = start + datetime.timedelta(seconds=i)
        rows.append(
            {
                "type": "track",
                "userId": f"user-{i % 1000:06d}",
                "event": "Product Added",
                "properties": {
                    "product_id": "sku-48213",
                    "name": "Ergonomic Keyboard",
                    "price": 129.99,
                    "quantity": 2,
                    "in_stock": True,
                    "tags": ["electronics", "office", "sale"],
                    "dimensions": {"width_cm": 44.5, "depth_cm": 13.2, "color": "graphite"},
                    "row": i,
                },
                "context": {"ip": "203.0.113.42", "page": {"path": "/products/sku-48213"}},
                "timestamp": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            }
        )
    return rows


def bench_client(rows: list[dict[str, Any]], path: Path, threads: int, sink: Any) -> tuple[float, int]:
    source = open_source(str(path))
    key = source.key
    source.close()
    calls = [
        {
            "user_id": r["userId"],
            "event": r["event"],
            "properties": r["properties"],
            "context": r["context"],
            "timestamp": datetime.datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")),
            "message_id": derive_message_id(key, i + 1, b""),
        }
        for i, r in enumerate(rows)
    ]
    server = sink()
    client = Client("bench-key", host=server.url, **{**CLIENT_DEFAULTS, "thread": threads})
    started = time.perf_counter()
    for kwargs in calls:
        client.track(**kwargs)
    client.flush()
    elapsed = time.perf_counter() - started
    delivered = int(client.stats()["delivered"])
    client.shutdown()
    stored = server.stop()
    assert stored == delivered == len(rows), (stored, delivered)
    return elapsed, delivered


def bench_import(
    path: Path, n: int, threads: int = 1, dry_run: bool = False, sink: Any = ServerProcess
) -> tuple[float, int]:
    server = None if dry_run else sink()
    started = time.perf_counter()
    summary = run_import(
        [str(path)],
        write_key="bench-key",
        host=server.url if server else None,
        dry_run=dry_run,
        threads=threads,
        checkpoint=str(path) + ".checkpoint.json",
    )
    elapsed = time.perf_counter() - started
    if server is not None:
        stored = server.stop()
        assert stored == summary.delivered == n, (stored, summary.delivered)
        return elapsed, summary.delivered
    return elapsed, summary.sent


def bench_spark(spark: Any, path: Path, n: int, partitions: int, sink: Any) -> tuple[float, int]:
    try:
        from segment_lite.spark import send_dataframe
    except ImportError:  # only --spark needs it
        sys.exit('--spark needs pyspark: pip install ".[spark]"')

    server = sink()
    started = time.perf_counter()
    df = spark.read.schema(SPARK_SCHEMA).json(str(path))
    summary = send_dataframe(df, write_key="bench-key", host=server.url)
    elapsed = time.perf_counter() - started
    stored = server.stop()
    assert summary.partitions == partitions, summary.partitions
    assert stored == summary.delivered == n, (stored, summary.delivered)
    return elapsed, summary.delivered


def spark_session(partitions: int, path: Path) -> Any:
    try:
        from pyspark.sql import SparkSession
    except ImportError:  # only --spark needs it
        sys.exit('--spark needs pyspark: pip install ".[spark]"')

    size = path.stat().st_size
    session = (
        SparkSession.builder.master(f"local[{partitions}]")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        # Split the file into one partition per core.
        .config("spark.sql.files.maxPartitionBytes", str(size // partitions + 1))
        .config("spark.sql.files.openCostInBytes", "0")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="sender threads, for both client and import")
    parser.add_argument(
        "--sink", choices=sorted(SINKS), default="collector", help="the server (default: collector)"
    )
    parser.add_argument("--spark", type=int, default=0, metavar="N", help="also send_dataframe on local[N]")
    parser.add_argument("--only", choices=("import", "spark"), help="run only this one")
    args = parser.parse_args()
    sink = SINKS[args.sink]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        rows = make_rows(args.rows)
        with path.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
        size_mb = path.stat().st_size / 1e6
        python = sys.version.split()[0]
        print(f"{args.rows:,} rows, {size_mb:.1f} MB of JSON Lines; {os.cpu_count()} CPUs; Python {python}")
        print(f"sink: {args.sink}")
        print("| run | seconds | messages/s |")
        print("| --- | ---: | ---: |")
        spark = spark_session(args.spark, path) if args.spark else None
        runs: list[tuple[str, Any]] = [
            ("client (track calls, prepared)", lambda: bench_client(rows, path, args.threads, sink)),
            ("import (JSON Lines file)", lambda: bench_import(path, args.rows, args.threads, sink=sink)),
            ("import --dry-run", lambda: bench_import(path, args.rows, dry_run=True)),
        ]
        if spark is not None:
            name = f"spark send_dataframe, local[{args.spark}]"
            runs.append((name, lambda: bench_spark(spark, path, args.rows, args.spark, sink)))
        if args.only == "import":
            runs = [runs[1]]
        elif args.only == "spark":
            runs = runs[3:]
        for _ in range(args.runs):
            for name, run in runs:
                elapsed, count = run()
                print(f"| {name} | {elapsed:.2f} | {count / elapsed:,.0f} |", flush=True)
        if spark is not None:
            spark.stop()


if __name__ == "__main__":
    main()
