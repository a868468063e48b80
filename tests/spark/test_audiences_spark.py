"""DuckDB and Spark compute the same traits, attribution and audiences, value for value."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pyspark")
pytest.importorskip("duckdb")
pytest.importorskip("yaml")
if shutil.which("java") is None and not os.environ.get("CI"):  # CI installs Java (.ci/run) and must run these
    pytest.skip("Spark needs Java (Debian: apt-get install openjdk-17-jre-headless)", allow_module_level=True)

from pyspark.sql import SparkSession

from segment_lite.audiences import compute, parse_definitions
from segment_lite.audiences.spark import compute_spark

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
import test_audiences as small  # noqa: E402

NOW = "2024-06-01T00:00:00Z"


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    session = (
        SparkSession.builder.master("local[2]")
        .appName("segment-lite-audiences-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        # a session zone other than UTC: results must not depend on it
        .config("spark.sql.session.timeZone", "America/New_York")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("FATAL")
    yield session
    session.stop()


def _differences(
    a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]
) -> list[tuple[str, str, Any, Any]]:
    out = []
    for user in sorted(set(a) | set(b)):
        left, right = a.get(user, {}), b.get(user, {})
        for key in sorted(set(left) | set(right)):
            if left.get(key, "<absent>") != right.get(key, "<absent>"):
                out.append((user, key, left.get(key, "<absent>"), right.get(key, "<absent>")))
    return out


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("audiences") / "events.jsonl"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "audiences" / "generate_events.py"),
            "--users",
            "300",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return out


def test_every_trait_kind_and_model_agree_on_the_hand_made_events(
    spark: SparkSession, tmp_path: Path
) -> None:
    events = small._write_jsonl(tmp_path / "events.jsonl", small.EVENTS)
    definitions = parse_definitions(small.DEFINITIONS)
    kinds = {t.kind for t in definitions.traits} | {a.model for a in definitions.attributions}
    assert kinds >= {
        "count",
        "first_time",
        "last_time",
        "distinct_count",
        "sum",
        "min",
        "max",
        "last",
        "days_since",
    }
    assert kinds >= {"first_touch", "last_touch", "linear", "time_decay"}
    duck = compute(definitions, [str(events)], now=NOW)
    sparked = compute_spark(definitions, [str(events)], now=NOW, spark=spark)
    assert _differences(duck.users, sparked.users) == []
    assert duck.inputs.as_dict() == sparked.inputs.as_dict()
    assert spark.conf.get("spark.sql.session.timeZone") == "America/New_York"  # restored


@pytest.mark.parametrize("definitions_file", ["example", "every-kind"])
def test_duckdb_and_spark_agree_on_a_generated_month(
    spark: SparkSession, generated: Path, definitions_file: str
) -> None:
    if definitions_file == "example":
        definitions = str(ROOT / "examples" / "audiences" / "definitions.yaml")
    else:
        definitions = parse_definitions(small.DEFINITIONS)  # channels found in the data, all four models
    duck = compute(definitions, [str(generated)], now=NOW)
    sparked = compute_spark(definitions, [str(generated)], now=NOW, spark=spark)
    assert len(duck.users) == 300
    assert _differences(duck.users, sparked.users) == []
    assert duck.audience_sizes == sparked.audience_sizes


def test_a_dataframe_with_struct_columns_gives_the_same_result(spark: SparkSession, generated: Path) -> None:
    definitions = str(ROOT / "examples" / "audiences" / "definitions.yaml")
    frame = spark.read.json(str(generated))  # inferred schema: properties, traits and context are structs
    duck = compute(definitions, [str(generated)], now=NOW)
    sparked = compute_spark(definitions, frame, now=NOW, spark=spark)
    assert _differences(duck.users, sparked.users) == []
