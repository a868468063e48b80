"""Hostile rows: unreadable timestamps and broken CSV become rejected rows, and the import goes on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from import_helpers import WRITE_KEY, by_n, read_jsonl, run_cli, track_rows, write_jsonl

from segment_lite.collector import Collector
from segment_lite.importer import FieldMapping, RowConverter, RowError, RowOptions, open_source, run_import

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


# -- damaged checkpoints ------------------------------------------------------------


def _valid_checkpoint(path: Path) -> dict[str, object]:
    """A checkpoint of the first two lines of ``path`` (a file the test wrote, or not)."""
    key = "0" * 64
    if path.exists():
        source = open_source(str(path))
        key = source.key
        source.close()
    return {
        "version": 1,
        "tool": "segment-lite import",
        "shard": None,
        "id_salt": "",
        "files": [{"path": str(path), "key": key, "lines_done": 2, "complete": False}],
        "counts": {"rows_read": 2, "sent": 2, "rejected": 0, "rejected_by_server": 0},
        "rejects": {"path": str(path) + ".rejects.jsonl", "bytes": 0},
    }


DAMAGE = [
    ("shard", "x/y"),
    ("shard", "3/2"),
    ("shard", 7),
    ("counts", []),
    ("counts", {"sent": "many"}),
    ("files", {"path": "a"}),
    ("files", [{"path": "a", "key": "k", "lines_done": "x", "complete": False}]),
    ("files", [{"path": "a", "key": "k", "lines_done": -1, "complete": False}]),
    ("files", [{"path": "a", "key": "k", "lines_done": 2, "complete": "no"}]),
    ("files", [{"path": "a", "key": "k", "lines_done": 2, "complete": False, "read_sha256": 5}]),
    ("files", ["a"]),
    ("id_salt", ["s"]),
    ("rejects", {"path": "r", "bytes": -5}),
    ("rejects", {"path": 3, "bytes": 0}),
    ("rejects", "r.jsonl"),
]


@pytest.mark.parametrize(("field", "value"), DAMAGE)
def test_a_damaged_checkpoint_is_an_error_naming_the_file_and_field(
    workdir: Path, field: str, value: object
) -> None:
    from segment_lite.importer import Checkpoint, ImportConfigError

    path = workdir / "events.jsonl.checkpoint.json"
    data = _valid_checkpoint(workdir / "events.jsonl")
    data[field] = value
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ImportConfigError) as caught:
        Checkpoint.load(str(path))
    assert str(path) in str(caught.value)
    assert field in str(caught.value)


@pytest.mark.parametrize("text", ["[" * 100_000, '{"version": 1, "files": ' + "[" * 100_000, "\xff\xfe{", ""])
def test_an_unreadable_checkpoint_is_an_error_not_a_traceback(workdir: Path, text: str) -> None:
    from segment_lite.importer import Checkpoint, ImportConfigError

    path = workdir / "c.checkpoint.json"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ImportConfigError, match=r"c\.checkpoint\.json"):
        Checkpoint.load(str(path))


@pytest.mark.parametrize(("field", "value"), [("shard", "x/y"), ("counts", []), ("counts", [1])])
def test_a_damaged_checkpoint_blocks_resume_but_not_a_fresh_import(
    collector: Collector, workdir: Path, field: str, value: object
) -> None:
    events = write_jsonl(workdir / "events.jsonl", track_rows(5))
    checkpoint = workdir / "events.jsonl.checkpoint.json"
    data = _valid_checkpoint(events)
    data[field] = value
    checkpoint.write_text(json.dumps(data), encoding="utf-8")
    args = [str(events), "--write-key", WRITE_KEY, "--host", collector.url, "--progress", "none", "--json"]

    resumed = run_cli([*args, "--resume"], cwd=workdir)
    assert resumed.returncode == 2, resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert str(checkpoint) in resumed.stderr and f"'{field}'" in resumed.stderr
    assert collector.stats.messages_received == 0

    fresh = run_cli(args, cwd=workdir)
    assert fresh.returncode == 0, fresh.stderr
    assert "Traceback" not in fresh.stderr
    assert "cannot be read" in fresh.stderr and f"'{field}'" in fresh.stderr
    assert json.loads(fresh.stdout)["delivered"] == 5
    # The damaged file was replaced by this run's checkpoint, which a resume now reads.
    again = run_cli([*args, "--resume"], cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["skipped_resume"] == 5
