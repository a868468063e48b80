"""Hostile rows: unreadable timestamps and broken CSV become rejected rows, and the import goes on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from import_helpers import WRITE_KEY, by_n, read_jsonl, run_cli, track_rows, write_jsonl

from segment_lite.collector import Collector
from segment_lite.importer import FieldMapping, RowConverter, RowError, RowOptions, run_import

# -- timestamps ---------------------------------------------------------------------


def test_timestamps_too_long_for_int_or_float_are_rejected_rows(collector: Collector, workdir: Path) -> None:
    rows = track_rows(6)
    rows[1]["timestamp"] = "1" * 5000  # int() refuses it: ValueError (over 4,300 digits)
    rows[3]["timestamp"] = "1" * 400  # an int too large for a float: OverflowError
    rows[4]["timestamp"] = "-" + "9" * 400
    path = write_jsonl(workdir / "events.jsonl", rows)
    summary = run_import([str(path)], write_key=WRITE_KEY, host=collector.url)
    assert (summary.status, summary.rows_read, summary.rejected, summary.delivered) == ("completed", 6, 3, 3)
    assert sorted(by_n(collector.messages())) == [0, 2, 5]
    records = read_jsonl(workdir / "events.jsonl.rejects.jsonl")
    assert [r["line"] for r in records] == [2, 4, 5]
    for record in records:
        assert (record["stage"], record["field"]) == ("parse", "timestamp")
        assert record["reason"].startswith("timestamp: ")
        assert len(record["reason"]) < 200  # the value is cut in the reason, whole in the row
    assert records[0]["row"]["timestamp"] == "1" * 5000


def test_a_huge_epoch_number_is_a_rejected_row_naming_the_column() -> None:
    converter = RowConverter(
        RowOptions(type="track", mapping=FieldMapping.parse("userId=id,event=what,timestamp=created_at"))
    )
    for value in (10**400, "1" * 400, "1" * 5000, "1e400", 1e308):
        with pytest.raises(RowError) as caught:
            converter.convert({"id": "u1", "what": "Paid", "created_at": value})
        assert caught.value.field == "timestamp"
        assert "column 'created_at'" in caught.value.reason


def test_the_command_rejects_a_bad_timestamp_without_a_traceback(collector: Collector, workdir: Path) -> None:
    rows = track_rows(3)
    rows[1]["timestamp"] = "7" * 5000
    path = write_jsonl(workdir / "events.jsonl", rows)
    done = run_cli(
        [str(path), "--write-key", WRITE_KEY, "--host", collector.url, "--progress", "none", "--json"],
        cwd=workdir,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    summary = json.loads(done.stdout)
    assert (summary["rejected"], summary["delivered"]) == (1, 2)
