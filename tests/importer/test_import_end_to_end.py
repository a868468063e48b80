"""Imports delivered to a real local collector: exact fields, formats, dedup, rejects, dry run, shards."""

from __future__ import annotations

import csv
import datetime
import gzip
import itertools
import json
from collections.abc import Mapping
from pathlib import Path

import pytest
from import_helpers import (
    WRITE_KEY,
    SlowerTransport,
    by_n,
    expected_ids,
    read_jsonl,
    run_cli,
    track_rows,
    write_jsonl,
)

from segment_lite.collector import Collector
from segment_lite.importer import Checkpoint, derive_message_id, open_source, run_import
from segment_lite.retry import RetryPolicy
from segment_lite.transport import RequestsTransport, TransportResponse

LIBRARY = {"name": "segment-lite"}


def _no_jitter(delay: float) -> float:
    return delay


def test_jsonl_arrives_complete_with_timestamps_and_integrations(collector: Collector, workdir: Path) -> None:
    rows = track_rows(3)
    rows[1] = {
        "type": "identify",
        "anonymousId": "anon-1",
        "traits": {"email": "a@example.com"},
        "context": {"ip": "203.0.113.9"},
        "timestamp": 1685620800123,  # epoch milliseconds
        "messageId": "own-id-1",
    }
    path = write_jsonl(workdir / "events.jsonl", rows)
    summary = run_import(
        [str(path)], write_key=WRITE_KEY, host=collector.url, integrations={"All": False, "Amplitude": True}
    )
    assert (summary.status, summary.rows_read, summary.sent, summary.delivered, summary.rejected) == (
        "completed",
        3,
        3,
        3,
        0,
    )
    stored = {m["messageId"]: m for m in collector.messages()}
    first_id, third_id = expected_ids(path, [1, 3])
    assert set(stored) == {first_id, "own-id-1", third_id}

    track = stored[first_id]
    for key in ("receivedAt", "sentAt", "timestamp"):
        track.pop(key)
    assert track["context"]["library"]["name"] == "segment-lite"
    track["context"].pop("library")
    assert track == {
        "type": "track",
        "event": "Order Completed",
        "userId": "user-0",
        "anonymousId": None,
        "properties": {"n": 0, "total": 10.5},
        "messageId": first_id,
        "originalTimestamp": "2023-06-01T12:00:00.250+00:00",
        "context": {},
        "integrations": {"All": False, "Amplitude": True},
    }
    identify = stored["own-id-1"]
    assert identify["type"] == "identify"
    assert identify["anonymousId"] == "anon-1"
    assert identify["traits"] == {"email": "a@example.com"}
    assert identify["context"]["ip"] == "203.0.113.9"
    assert identify["originalTimestamp"] == "2023-06-01T12:00:00.123+00:00"
    assert identify["integrations"] == {"All": False, "Amplitude": True}
    # The server's clock-skew correction moves `timestamp` by the transit time only.
    assert identify["timestamp"].startswith("2023-06-01T12:00:")


def test_csv_with_mapping_conversions_and_timezone(collector: Collector, workdir: Path) -> None:
    path = workdir / "signups.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "action", "created_at", "plan", "seats", "note"])
        writer.writerow(["u1", "Signed Up", "2024-01-15 09:00:00", "pro", "3", "multi\nline"])
        writer.writerow(["u2", "Signed Up", "2024-07-15 09:00:00", "", "1", ""])
        writer.writerow(["u3", "Signed Up", "1718445600", "team", "x", ""])  # bad seats
    summary = run_import(
        [str(path)],
        write_key=WRITE_KEY,
        host=collector.url,
        type="track",
        mapping="userId=user_id,event=action,timestamp=created_at,properties.plan=plan,properties.seats:int=seats,"
        "properties.note=note",
        timezone="Europe/Paris",
        integrations={"All": False, "Amplitude": True},
    )
    assert (summary.sent, summary.delivered, summary.rejected) == (2, 2, 1)
    stored = {m["userId"]: m for m in collector.messages()}
    assert set(stored) == {"u1", "u2"}
    assert stored["u1"]["originalTimestamp"] == "2024-01-15T08:00:00.000+00:00"  # CET, UTC+1
    assert stored["u2"]["originalTimestamp"] == "2024-07-15T07:00:00.000+00:00"  # CEST, UTC+2
    assert stored["u1"]["properties"] == {"plan": "pro", "seats": 3, "note": "multi\nline"}
    assert stored["u2"]["properties"] == {"seats": 1}
    assert stored["u1"]["event"] == "Signed Up"
    assert stored["u1"]["integrations"] == {"All": False, "Amplitude": True}
    [reject] = read_jsonl(workdir / "signups.csv.rejects.jsonl")
    # The third record starts on line 5: the quoted newline makes record 1 span lines 2-3.
    assert reject["line"] == 5
    assert reject["field"] == "properties.seats"
    assert reject["row"] == {
        "user_id": "u3",
        "action": "Signed Up",
        "created_at": "1718445600",
        "plan": "team",
        "seats": "x",
        "note": "",
    }


def test_gzip_is_detected_by_content_and_gives_the_same_ids(collector: Collector, workdir: Path) -> None:
    rows = track_rows(50)
    plain = write_jsonl(workdir / "plain.jsonl", rows)
    packed = write_jsonl(workdir / "packed.data", rows, compress=True)  # no .gz suffix
    assert open_source(str(packed)).compressed
    first = run_import([str(plain)], write_key=WRITE_KEY, host=collector.url)
    assert first.delivered == 50
    ids = collector.message_ids()
    second = run_import([str(packed)], write_key=WRITE_KEY, host=collector.url)
    assert second.delivered == 50
    assert collector.message_ids() == ids
    assert collector.stats.duplicates == 50
    assert len(by_n(collector.messages())) == 50


def test_rerun_without_resume_is_deduplicated(collector: Collector, workdir: Path) -> None:
    path = write_jsonl(workdir / "events.jsonl", track_rows(120))
    run_import([str(path)], write_key=WRITE_KEY, host=collector.url, chunk_size=50)
    ids = collector.message_ids()
    assert ids == set(expected_ids(path, range(1, 121)))
    again = run_import([str(path)], write_key=WRITE_KEY, host=collector.url, chunk_size=50)
    assert again.skipped_resume == 0 and again.delivered == 120
    assert collector.message_ids() == ids
    assert collector.stats.messages_stored == 120
    assert collector.stats.duplicates == 120


def test_id_salt_makes_new_ids(collector: Collector, workdir: Path) -> None:
    path = write_jsonl(workdir / "events.jsonl", track_rows(5))
    run_import([str(path)], write_key=WRITE_KEY, host=collector.url)
    run_import([str(path)], write_key=WRITE_KEY, host=collector.url, id_salt="second-import")
    assert collector.stats.messages_stored == 10


def test_stdin_through_the_command_line(collector: Collector, workdir: Path) -> None:
    data = "".join(json.dumps(row) + "\n" for row in track_rows(30)).encode()
    result = run_cli(
        ["-", "--write-key", WRITE_KEY, "--host", collector.url, "--progress", "none", "--json"],
        input=gzip.compress(data),
        cwd=workdir,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["delivered"], summary["checkpoint"]) == (30, None)
    assert sorted(by_n(collector.messages())) == list(range(30))


def test_from_archive_strips_sent_at_message_id_and_project_id(collector: Collector, workdir: Path) -> None:
    archived = {
        "type": "track",
        "event": "Signed Up",
        "userId": "u-9",
        "properties": {"plan": "pro"},
        "context": {"library": {"name": "analytics.js", "version": "4.1.0"}},
        "messageId": "ajs-original-id",
        "projectId": "proj-123",
        "sentAt": "2023-02-01T10:00:05.000Z",
        "receivedAt": "2023-02-01T10:00:06.000Z",
        "originalTimestamp": "2023-02-01T10:00:00.000Z",
        "timestamp": "2023-02-01T10:00:01.000Z",
        "version": 2,
    }
    path = write_jsonl(workdir / "archive.jsonl", [archived])
    assert run_import([str(path)], write_key=WRITE_KEY, host=collector.url, from_archive=True).delivered == 1
    [message] = collector.messages()
    [derived] = expected_ids(path, [1])
    assert message["messageId"] == derived
    assert "projectId" not in message
    assert message["sentAt"] != archived["sentAt"]  # the batch's own sentAt, not the archived one
    assert (
        message["originalTimestamp"] == "2023-02-01T10:00:01.000+00:00"
    )  # the archive's (corrected) timestamp
    assert message["context"]["library"] == {"name": "analytics.js", "version": "4.1.0"}

    # Without --from-archive the original messageId is kept.
    run_import([str(path)], write_key=WRITE_KEY, host=collector.url, checkpoint=False)
    assert "ajs-original-id" in collector.message_ids()


def test_rejects_file_records_line_reason_field_and_row(collector: Collector, workdir: Path) -> None:
    rows: list[object] = list(track_rows(4))
    rows.insert(1, "{not json")
    rows.insert(3, {"type": "track", "userId": "u", "timestamp": "2024-01-01"})  # no event
    rows.insert(4, {"type": "track", "userId": "u", "event": "E"})  # no timestamp
    rows.insert(5, {"type": "track", "userId": "u", "event": "E", "timestamp": "2024-01-01", "properties": 5})
    path = write_jsonl(workdir / "mixed.jsonl", rows)
    summary = run_import(
        [str(path)], write_key=WRITE_KEY, host=collector.url, rejects=str(workdir / "bad.jsonl")
    )
    assert (summary.rows_read, summary.delivered, summary.rejected) == (8, 4, 4)
    rejects = read_jsonl(workdir / "bad.jsonl")
    assert [(r["line"], r["stage"], r["field"]) for r in rejects] == [
        (2, "parse", None),
        (4, "validate", "event"),
        (5, "parse", "timestamp"),
        (6, "validate", "properties"),
    ]
    assert all(r["file"] == str(path) for r in rejects)
    assert rejects[0]["row"] == "{not json" and "invalid JSON" in rejects[0]["reason"]
    assert rejects[1]["row"] == rows[3]
    assert "event must be a non-empty string" in rejects[1]["reason"]
    assert "--allow-now" in rejects[2]["reason"]
    assert sorted(by_n(collector.messages())) == [0, 1, 2, 3]


def test_allow_now_sends_rows_without_a_timestamp(collector: Collector, workdir: Path) -> None:
    path = write_jsonl(
        workdir / "e.jsonl", [{"type": "track", "userId": "u", "event": "E", "properties": {"n": 0}}]
    )
    assert run_import([str(path)], write_key=WRITE_KEY, host=collector.url).rejected == 1
    assert run_import([str(path)], write_key=WRITE_KEY, host=collector.url, allow_now=True).delivered == 1
    sent = datetime.datetime.fromisoformat(
        collector.messages()[0]["originalTimestamp"].replace("Z", "+00:00")
    )
    assert abs(sent - datetime.datetime.now(datetime.timezone.utc)) < datetime.timedelta(minutes=5)


def test_server_rejections_go_to_the_rejects_file(collector: Collector, workdir: Path) -> None:
    path = write_jsonl(workdir / "events.jsonl", track_rows(10))
    collector.fail_next(2, status=400)
    one_per_request = {"upload_size": 1, "max_batch_size": 1}
    summary = run_import([str(path)], write_key=WRITE_KEY, host=collector.url, client_options=one_per_request)
    assert summary.status == "completed"
    assert summary.rejected_by_server == 2 and summary.delivered == 8
    rejects = read_jsonl(workdir / "events.jsonl.rejects.jsonl")
    assert [(r["line"], r["stage"], r["status"]) for r in rejects] == [(1, "server", 400), (2, "server", 400)]
    assert "HTTP 400" in rejects[0]["reason"]
    assert rejects[0]["row"]["properties"]["n"] == 0
    assert rejects[0]["messageId"] == expected_ids(path, [1])[0]
    checkpoint = Checkpoint.load(str(workdir / "events.jsonl.checkpoint.json"))
    assert checkpoint is not None and checkpoint.files[0].complete and checkpoint.files[0].lines_done == 10


def test_dry_run_validates_everything_and_sends_nothing(collector: Collector, workdir: Path) -> None:
    rows: list[object] = [*track_rows(20), {"type": "track", "userId": "u", "timestamp": "2024-01-01"}]
    path = write_jsonl(workdir / "events.jsonl", rows)
    summary = run_import([str(path)], write_key=None, host=collector.url, dry_run=True)
    assert (summary.dry_run, summary.sent, summary.delivered, summary.rejected) == (True, 20, 0, 1)
    assert collector.stats.requests == 0
    assert not (workdir / "events.jsonl.checkpoint.json").exists()
    assert read_jsonl(workdir / "events.jsonl.rejects.jsonl")[0]["line"] == 21


def test_max_errors_stops_early(collector: Collector, workdir: Path) -> None:
    rows: list[object] = []
    for i in range(100):
        rows.append("garbage" if i % 10 == 5 else track_rows(1, start=i)[0])
    path = write_jsonl(workdir / "events.jsonl", rows)
    summary = run_import([str(path)], write_key=WRITE_KEY, host=collector.url, max_errors=2, chunk_size=10)
    assert summary.status == "max_errors" and summary.exit_code == 3
    assert summary.rejected == 3
    assert summary.rows_read == 26  # stopped at the third bad row, line 26
    assert summary.delivered == 23
    checkpoint = Checkpoint.load(str(workdir / "events.jsonl.checkpoint.json"))
    assert checkpoint is not None and checkpoint.files[0].lines_done == 26
    assert not checkpoint.files[0].complete


def test_shards_partition_the_rows(collector: Collector, workdir: Path) -> None:
    path = write_jsonl(workdir / "events.jsonl", track_rows(100))
    shards = []
    for i in (1, 2, 3):
        summary = run_import(
            [str(path)], write_key=WRITE_KEY, host=collector.url, shard=f"{i}/3", chunk_size=7
        )
        assert summary.skipped_shard + summary.delivered == 100
        shards.append({m["properties"]["n"] for m in collector.messages()} - set().union(*shards))
        assert Path(f"{path}.shard-{i}-of-3.checkpoint.json").exists()
    assert [len(s) for s in shards] == [34, 33, 33]
    for a, b in itertools.combinations(shards, 2):
        assert not a & b
    assert set().union(*shards) == set(range(100))
    assert shards[0] == {n for n in range(100) if n % 3 == 0}  # line n+1 -> shard (n % 3) + 1
    assert collector.stats.duplicates == 0


def test_several_files_in_one_import(collector: Collector, workdir: Path) -> None:
    a = write_jsonl(workdir / "a.jsonl", track_rows(10))
    b = write_jsonl(workdir / "b.jsonl", track_rows(10, start=10))
    # Slow answers: both files are read before their only chunks are confirmed, together.
    slow = {"transport": SlowerTransport}
    summary = run_import(
        [str(a), str(b)], write_key=WRITE_KEY, host=collector.url, chunk_size=100, client_options=slow
    )
    assert summary.delivered == 20
    assert sorted(by_n(collector.messages())) == list(range(20))
    checkpoint = Checkpoint.load(str(workdir / "a.jsonl.checkpoint.json"))
    assert checkpoint is not None
    assert [(f.lines_done, f.complete) for f in checkpoint.files] == [(10, True), (10, True)]


def test_refused_write_key_stops_the_import(workdir: Path) -> None:
    path = write_jsonl(workdir / "events.jsonl", track_rows(30))
    with Collector(write_keys=["the-right-key"]) as collector:
        summary = run_import([str(path)], write_key="wrong-key", host=collector.url, chunk_size=10)
        assert summary.status == "delivery_failed" and summary.exit_code == 4
        assert "401" in (summary.error or "")
        assert summary.delivered == 0 and summary.rejected_by_server == 0
        assert not (workdir / "events.jsonl.rejects.jsonl").exists()
        checkpoint = Checkpoint.load(str(workdir / "events.jsonl.checkpoint.json"))
        assert checkpoint is None or checkpoint.files[0].lines_done == 0


class FailFromRow:
    """A transport that answers 503 to any batch holding a row numbered ``n`` or more, and forwards the rest."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.inner = RequestsTransport()

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> TransportResponse:
        if any(m["properties"]["n"] >= self.n for m in json.loads(body)["batch"]):
            return TransportResponse(503, {}, b"")
        return self.inner.post(url, body, headers, timeout)

    def abort(self) -> None:
        self.inner.abort()

    def close(self) -> None:
        self.inner.close()


def test_exhausted_retries_stop_and_resume_delivers_the_rest(collector: Collector, workdir: Path) -> None:
    path = write_jsonl(workdir / "events.jsonl", track_rows(40))
    failing = {
        "retry_policy": RetryPolicy(max_retries=1, base_delay_s=0.01, max_delay_s=0.01, jitter=_no_jitter),
        "upload_size": 1,
        "max_batch_size": 1,  # one message per request: rows 0-19 delivered, row 20 fails
        "transport": lambda: FailFromRow(20),
    }
    summary = run_import(
        [str(path)], write_key=WRITE_KEY, host=collector.url, chunk_size=10, client_options=failing
    )
    assert summary.status == "delivery_failed" and summary.exit_code == 4
    assert "RetriesExhaustedError" in (summary.error or "")
    assert summary.delivered == 20
    assert summary.undelivered == summary.sent - 20 > 0
    assert not (workdir / "events.jsonl.rejects.jsonl").exists()
    checkpoint = Checkpoint.load(str(workdir / "events.jsonl.checkpoint.json"))
    assert checkpoint is not None and checkpoint.files[0].lines_done == 20  # not past the failed row
    resumed = run_import([str(path)], write_key=WRITE_KEY, host=collector.url, chunk_size=10, resume=True)
    assert resumed.status == "completed"
    assert resumed.skipped_resume == 20 and resumed.delivered == 20
    assert sorted(by_n(collector.messages())) == list(range(40))
    assert collector.stats.duplicates == 0


@pytest.mark.parametrize("bad", ["0/3", "4/3", "a/b", "3"])
def test_bad_shard_specs(bad: str, workdir: Path) -> None:
    from segment_lite.importer import ImportConfigError

    path = write_jsonl(workdir / "e.jsonl", track_rows(1))
    with pytest.raises(ImportConfigError, match="shard"):
        run_import([str(path)], dry_run=True, shard=bad)


def test_oversize_rows_are_rejected_and_filtered_rows_counted(collector: Collector, workdir: Path) -> None:
    rows = track_rows(4)
    rows[1]["properties"]["blob"] = "x" * 40_000  # over Segment's 32 KB per message
    path = write_jsonl(workdir / "events.jsonl", rows)

    def drop_row_two(message: dict[str, object]) -> object:
        return None if message["properties"]["n"] == 2 else message  # type: ignore[index]

    summary = run_import(
        [str(path)], write_key=WRITE_KEY, host=collector.url, client_options={"before_send": drop_row_two}
    )
    assert (summary.status, summary.delivered, summary.rejected, summary.filtered) == ("completed", 2, 1, 1)
    [reject] = read_jsonl(workdir / "events.jsonl.rejects.jsonl")
    assert (reject["line"], reject["stage"], reject["field"]) == (2, "validate", "message")
    assert "32 KB" in reject["reason"]
    assert sorted(by_n(collector.messages())) == [0, 3]


def test_undelivered_hint_without_a_checkpoint_does_not_say_resume(
    collector: Collector, workdir: Path
) -> None:
    path = write_jsonl(workdir / "events.jsonl", track_rows(40))
    failing = {
        "retry_policy": RetryPolicy(max_retries=0, base_delay_s=0.01, max_delay_s=0.01, jitter=_no_jitter),
        "upload_size": 1,
        "max_batch_size": 1,
        "transport": lambda: FailFromRow(20),
    }
    common = {"write_key": WRITE_KEY, "host": collector.url, "chunk_size": 10, "client_options": failing}
    kept = run_import([str(path)], **common)
    assert kept.undelivered > 0 and "(resume to send them)" in kept.format()
    none = run_import([str(path)], checkpoint=False, **common)
    assert none.undelivered > 0 and none.checkpoint is None
    report = none.format()
    assert "resume" not in report
    assert "no checkpoint was kept: run the import again" in report


def test_a_rejected_line_keeps_its_exact_text_and_ids_ignore_surrounding_blanks(
    collector: Collector, workdir: Path
) -> None:
    first, third = (json.dumps(row).encode() for row in track_rows(2))
    path = workdir / "events.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + first + b"  \r\n" + b"  not json \t\r\n" + b"\t" + third + b"   \n")
    summary = run_import([str(path)], write_key=WRITE_KEY, host=collector.url)
    assert (summary.delivered, summary.rejected) == (2, 1)
    [reject] = read_jsonl(workdir / "events.jsonl.rejects.jsonl")
    assert (reject["line"], reject["row"]) == (2, "  not json \t")  # only the line ending is gone
    key = open_source(str(path)).key
    # Ids are derived from the row without the blanks around it (and the BOM), as they always were.
    assert collector.message_ids() == {
        derive_message_id(key, 1, first),
        derive_message_id(key, 3, third),
    }
