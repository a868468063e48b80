"""The spool benchmark runs end to end (tiny N, one repetition); it asserts no timings."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks import spool as spool_bench
from segment_lite.spool.disk import CACHE_MAX_BYTES

pytestmark = pytest.mark.timeout(300)


def test_spool_benchmark_runs_every_variant_and_reports_every_metric(tmp_path: Path) -> None:
    report = spool_bench.run_benchmark(
        n=200, warmup=20, reps=1, spool_root=str(tmp_path), log=None, kill_rounds=2
    )
    single = report["medians"]["single"]
    assert {"lite-json memory", "lite-json spool"} <= set(single)
    for run in report["runs"]:
        assert run["accepted"] == run["sent"], run
        if run["scenario"] == "single":
            assert run["delivered_unique"] == run["sent"], run
    for name, values in single.items():
        assert values["p50_us"] > 0 and values["msgs_per_s"] > 0, name
        if name.endswith("spool always"):
            assert values["fsyncs"] >= 200, name  # the meter sees the spool's fsyncs: one per call
    for run in report["runs"]:
        if run["scenario"] == "memory" and run["variant"].endswith("spool"):
            # Recent rows are kept in memory, up to CACHE_MAX_BYTES whatever the backlog.
            assert run["bytes_per_msg"] * run["queued_n"] < CACHE_MAX_BYTES * 1.25, run
    assert report["kill"]["lost"] == 0 and report["kill"]["accepted"] > 0, report["kill"]
    table = spool_bench.format_table(report)
    assert "lite-json spool" in table and not math.isnan(single["lite-json spool"]["p99_us"])
