"""The plan scenarios of the benchmark run end to end (timings are not asserted)."""

from __future__ import annotations

import pytest

from benchmarks import run as bench_run

pytestmark = pytest.mark.timeout(300)


def test_plan_scenarios_run_and_the_plan_is_applied() -> None:
    report = bench_run.run_benchmark(
        n=200, warmup=20, reps=1, clients=("lite-json",), scenarios=("props5", "plan5")
    )
    runs = {run["scenario"]: run for run in report["runs"]}
    assert set(runs) == {"props5", "plan5"}
    for run in runs.values():
        assert run["accepted"] == run["sent"] == run["delivered_unique"], run
    assert runs["plan5"]["plan_enforced"] is True
    assert runs["props5"]["plan_enforced"] is False
    assert report["medians"]["plan5"]["lite-json"]["p50_us"] > 0
