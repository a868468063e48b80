"""Hostile input: unreadable timestamps, broken CSV records, damaged checkpoints: clear errors or rejected rows."""

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


# -- CSV ----------------------------------------------------------------------------

QUIET = ("--progress", "none", "--json")
CSV_HEADER = b"userId,event,timestamp,properties.note\r\n"


def _csv_rows(n: int) -> list[bytes]:
    """``n`` CSV records (lines 2 to n + 1), the user id numbering them from 0."""
    return [f"u{i},Paid,2024-05-01T10:00:{i % 60:02d}Z,row {i}\r\n".encode() for i in range(n)]


def _import_csv(collector: Collector, workdir: Path, records: list[bytes]) -> tuple[dict[str, object], Path]:
    path = workdir / "signups.csv"
    path.write_bytes(CSV_HEADER + b"".join(records))
    done = run_cli(
        [str(path), "--type", "track", "--write-key", WRITE_KEY, "--host", collector.url, *QUIET],
        cwd=workdir,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), workdir / "signups.csv.rejects.jsonl"


def _users(collector: Collector) -> set[str]:
    return {m["userId"] for m in collector.messages()}


def test_a_csv_field_over_the_field_limit_is_one_rejected_row(collector: Collector, workdir: Path) -> None:
    records = _csv_rows(51)
    records[10] = b"u10,Paid,2024-05-01T10:00:10Z," + b"x" * (200 * 1024) + b"\r\n"  # line 12
    summary, rejects = _import_csv(collector, workdir, records)
    assert (summary["rows_read"], summary["rejected"], summary["delivered"]) == (51, 1, 50)
    [record] = read_jsonl(rejects)
    assert record["line"] == 12
    assert "131,072" in record["reason"] and record["field"] == "properties.note"
    assert "column 'properties.note'" in record["reason"]
    assert _users(collector) == {f"u{i}" for i in range(51)} - {"u10"}


def test_a_csv_row_in_another_encoding_is_one_rejected_row_on_its_own_line(
    collector: Collector, workdir: Path
) -> None:
    records = _csv_rows(51)
    records[10] = "u10,Paid,2024-05-01T10:00:10Z,Zoë café\r\n".encode("latin-1")  # line 12
    records[40] = "u40,Paid,2024-05-01T10:00:40Z,Zoë café\r\n".encode()  # UTF-8, as the file says
    summary, rejects = _import_csv(collector, workdir, records)
    assert (summary["rows_read"], summary["rejected"], summary["delivered"]) == (51, 1, 50)
    [record] = read_jsonl(rejects)
    assert record["line"] == 12
    assert "line 12" in record["reason"] and "utf-8" in record["reason"] and "0xeb" in record["reason"]
    assert record["field"] == "properties.note"
    assert record["row"].startswith("u10,Paid,") and "Zo\ufffd caf\ufffd" in record["row"]
    assert {m["properties"]["note"] for m in collector.messages() if m["userId"] == "u40"} == {"Zoë café"}


def test_a_csv_header_in_another_encoding_names_line_1(workdir: Path) -> None:
    path = workdir / "signups.csv"
    path.write_bytes("userId,event,timestamp,properties.café\n".encode("latin-1") + b"".join(_csv_rows(3)))
    done = run_cli([str(path), "--type", "track", "--dry-run", "--progress", "none"], cwd=workdir)
    assert done.returncode == 2
    assert "line 1" in done.stderr and "Traceback" not in done.stderr


def test_an_unterminated_quote_rejects_its_line_and_the_rest_is_read(
    collector: Collector, workdir: Path
) -> None:
    records = _csv_rows(51)
    records[10] = b'u10,Paid,2024-05-01T10:00:10Z,"row 10\r\n'  # line 12: the quote is never closed
    summary, rejects = _import_csv(collector, workdir, records)
    assert (summary["rows_read"], summary["rejected"], summary["delivered"]) == (51, 1, 50)
    [record] = read_jsonl(rejects)
    assert record["line"] == 12 and "quote" in record["reason"] and "line 12" in record["reason"]
    assert record["row"] == 'u10,Paid,2024-05-01T10:00:10Z,"row 10'
    assert _users(collector) == {f"u{i}" for i in range(51)} - {"u10"}


def test_an_unterminated_quote_closed_by_a_later_one_is_caught_too(
    collector: Collector, workdir: Path
) -> None:
    records = _csv_rows(51)
    records[10] = b'u10,Paid,2024-05-01T10:00:10Z,"row 10\r\n'  # line 12
    records[20] = b'u20,Paid,2024-05-01T10:00:20Z,"quoted, with a comma"\r\n'  # line 22
    records[30] = b'u30,Paid,2024-05-01T10:00:30Z,"two\r\nlines"\r\n'  # lines 32-33: a real multi-line value
    summary, rejects = _import_csv(collector, workdir, records)
    assert (summary["rows_read"], summary["rejected"], summary["delivered"]) == (51, 1, 50)
    assert [r["line"] for r in read_jsonl(rejects)] == [12]
    notes = {m["userId"]: m["properties"]["note"] for m in collector.messages()}
    assert notes["u20"] == "quoted, with a comma"
    assert notes["u30"] == "two\r\nlines"
    assert notes["u31"] == "row 31"  # on line 34, after the two-line record


def test_csv_line_numbers_count_physical_lines(workdir: Path) -> None:
    records = _csv_rows(20)
    records[2] = b'u2,Paid,2024-05-01T10:00:02Z,"three\nphysical\nlines"\n'  # lines 4-6
    records[9] = b"u9,Paid,not a time,x\n"  # line 13
    path = workdir / "signups.csv"
    path.write_bytes(CSV_HEADER + b"".join(records))
    summary = run_import([str(path)], type="track", dry_run=True)
    assert (summary.rows_read, summary.rejected) == (20, 1)
    assert [r["line"] for r in read_jsonl(workdir / "signups.csv.rejects.jsonl")] == [13]


class UnreadableRow:
    """A record whose ``asDict`` fails the way no check foresees."""

    def asDict(self, recursive: bool = False) -> dict[str, object]:
        raise OverflowError("this row cannot be read")

    def __repr__(self) -> str:
        return "UnreadableRow()"


def test_a_row_failing_in_an_unforeseen_way_is_one_rejected_row(collector: Collector, workdir: Path) -> None:
    from segment_lite.importer import import_rows

    rows: list[object] = list(track_rows(3))
    rows.insert(1, UnreadableRow())
    summary = import_rows(rows, write_key=WRITE_KEY, host=collector.url, rejects=str(workdir / "r.jsonl"))
    assert (summary.status, summary.rejected, summary.delivered) == ("completed", 1, 3)
    [record] = read_jsonl(workdir / "r.jsonl")
    assert record["line"] == 2 and record["row"] == "UnreadableRow()"
    assert record["reason"] == "cannot make a message of the row: OverflowError: this row cannot be read"
