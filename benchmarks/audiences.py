"""Audiences at scale: ``python -m benchmarks.audiences [--users 50000] [--json PATH]``.

Generates a month of events (about 1,000,000 for 50,000 users, with the example's
generator, into a temporary directory, never the repository), then measures:

* ``compute``: every trait, attribution model and audience of
  examples/audiences/definitions.yaml, from JSON Lines, with DuckDB (events/s);
* ``first sync``: the same, sending every user to the benchmark sink on loopback;
* ``second sync``: after a day of activity for 1% of users, what is sent again
  (about 1% of users) and how long it takes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.run import start_sink
from benchmarks.sink import DEFAULT_WRITE_KEY
from segment_lite.audiences import compute, sync

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "audiences"
NOW = "2024-06-01T00:00:00Z"
COMPUTE_BUDGET_S = 30.0


def _generate(out: Path, users: int, *extra: str) -> None:
    subprocess.run(
        [
            sys.executable,
            str(EXAMPLE / "generate_events.py"),
            "--users",
            str(users),
            "--out",
            str(out),
            *extra,
        ],
        check=True,
        capture_output=True,
    )


def _spark(definitions: str, events: Path, expected: dict[str, Any]) -> dict[str, Any]:
    from pyspark.sql import SparkSession

    from segment_lite.audiences.spark import compute_spark

    started = time.perf_counter()
    session = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.driver.memory", "3g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("FATAL")
    startup = time.perf_counter() - started
    try:
        result = compute_spark(definitions, [str(events)], now=NOW, spark=session)
    finally:
        session.stop()
    n = result.inputs.used
    same = result.users == expected
    print(
        f"spark local[2]: {n:,} events in {result.elapsed_s:.2f} s ({n / result.elapsed_s:,.0f} events/s;"
        f" session start {startup:.1f} s); equal to DuckDB: {same}"
    )
    return {
        "compute_s": round(result.elapsed_s, 2),
        "events_per_s": round(n / result.elapsed_s),
        "startup_s": round(startup, 1),
        "equal_to_duckdb": same,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=50000)
    parser.add_argument("--changed", type=float, default=0.01, help="fraction of users active again")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--spark", action="store_true", help="also compute with Spark local[2]")
    args = parser.parse_args(argv)
    definitions = str(EXAMPLE / "definitions.yaml")
    report: dict[str, Any] = {"users": args.users}
    with tempfile.TemporaryDirectory(prefix="segment-lite-bench-audiences-") as scratch:
        events = Path(scratch) / "events.jsonl"
        started = time.perf_counter()
        _generate(events, args.users)
        report["generate_s"] = round(time.perf_counter() - started, 2)

        result = compute(definitions, [str(events)], now=NOW)
        n = result.inputs.used
        report["events"] = n
        report["compute_s"] = round(result.elapsed_s, 2)
        report["compute_events_per_s"] = round(n / result.elapsed_s)
        report["audience_sizes"] = result.audience_sizes
        print(
            f"compute: {n:,} events, {len(result.users):,} users in {result.elapsed_s:.2f} s"
            f" ({n / result.elapsed_s:,.0f} events/s; budget {COMPUTE_BUDGET_S:.0f} s)"
        )

        if args.spark:
            report["spark"] = _spark(definitions, events, result.users)

        sink, url = start_sink(DEFAULT_WRITE_KEY)
        try:
            state = os.path.join(scratch, "state.db")
            first = sync(
                definitions, [str(events)], write_key=DEFAULT_WRITE_KEY, host=url, now=NOW, state=state
            )
            report["first_sync"] = {
                "s": round(first.elapsed_s, 2),
                "identifies": first.identifies,
                "tracks": first.tracks,
            }
            print(
                f"first sync: {first.identifies:,} identify + {first.tracks:,} track calls in {first.elapsed_s:.2f} s"
            )

            more = Path(scratch) / "day-after.jsonl"
            _generate(more, args.users, "--touch-fraction", str(args.changed))
            second = sync(
                definitions,
                [str(events), str(more)],
                write_key=DEFAULT_WRITE_KEY,
                host=url,
                now=NOW,
                state=state,
            )
            share = second.identifies / max(1, second.users)
            report["second_sync"] = {
                "s": round(second.elapsed_s, 2),
                "identifies": second.identifies,
                "tracks": second.tracks,
                "share_of_users": round(share, 4),
            }
            print(
                f"second sync ({args.changed:.0%} of users active): {second.identifies:,} identify calls"
                f" ({share:.2%} of users) in {second.elapsed_s:.2f} s"
            )
            assert first.status == second.status == "completed", (first.error, second.error)
        finally:
            sink.kill()
            sink.wait()
    report["compute_within_budget"] = report["compute_s"] < COMPUTE_BUDGET_S
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["compute_within_budget"] else 1


if __name__ == "__main__":
    sys.exit(main())
