"""Crash and Ctrl-C mid-import (in a subprocess, at a deterministic point), then --resume: exactly once."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path

import pytest
from import_helpers import (
    WRITE_KEY,
    SlowTransport,
    by_n,
    expected_ids,
    read_jsonl,
    run_cli,
    track_rows,
    write_jsonl,
)
from stopping_import import stop_after

from segment_lite.cli_common import Snapshot, describe
from segment_lite.collector import Collector
from segment_lite.importer import Checkpoint, ImportConfigError, run_import
from segment_lite.transport import TransportResponse

ROWS = 3000
CHUNK = 200


def _args(path: Path, collector: Collector, *extra: str) -> list[str]:
    return [
        str(path),
        "--write-key",
        WRITE_KEY,
        "--host",
        collector.url,
        "--chunk-size",
        str(CHUNK),
        "--progress",
        "none",
        "--json",
        *extra,
    ]


def test_crash_then_resume_delivers_every_row_exactly_once(collector: Collector, workdir: Path) -> None:
    path = write_jsonl(workdir / "events.jsonl", track_rows(ROWS))
    crashed = run_cli(_args(path, collector), stop="exit-after-checkpoints=3", cwd=workdir)
    assert crashed.returncode == 86, crashed.stderr  # os._exit right after the third checkpoint
    assert crashed.stdout == ""  # no summary: it died
    checkpoint = Checkpoint.load(str(workdir / "events.jsonl.checkpoint.json"))
    assert checkpoint is not None
    confirmed = checkpoint.files[0].lines_done
    assert confirmed >= 3 * CHUNK and confirmed % CHUNK == 0 and confirmed < ROWS
    assert not checkpoint.files[0].complete
    # Everything the checkpoint covers was delivered before it was written.
    stored_before = by_n(collector.messages())
    assert set(range(confirmed)) <= set(stored_before)

    resumed = run_cli([*_args(path, collector), "--resume"], cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["skipped_resume"] == confirmed
    assert summary["sent"] == ROWS - confirmed
    assert summary["delivered"] == ROWS - confirmed
    # Exactly once by messageId: one stored message per row, under the row's derived id.
    stored = by_n(collector.messages())
    assert sorted(stored) == list(range(ROWS))
    assert collector.message_ids() == set(expected_ids(path, range(1, ROWS + 1)))
    # Rows sent after the last checkpoint but before the crash came again and were deduplicated.
    assert collector.stats.duplicates == len(stored_before) - confirmed
    final = Checkpoint.load(str(workdir / "events.jsonl.checkpoint.json"))
    assert final is not None and final.files[0].complete and final.files[0].lines_done == ROWS


def test_ctrl_c_flushes_in_flight_rows_and_writes_the_checkpoint(collector: Collector, workdir: Path) -> None:
    path = write_jsonl(workdir / "events.jsonl", track_rows(ROWS))
    interrupted = run_cli(_args(path, collector), stop="sigint-after-checkpoints=2", cwd=workdir)
    assert interrupted.returncode == 130, interrupted.stderr
    summary = json.loads(interrupted.stdout)
    assert summary["status"] == "interrupted"
    assert "import interrupted" in interrupted.stderr
    checkpoint = Checkpoint.load(str(workdir / "events.jsonl.checkpoint.json"))
    assert checkpoint is not None
    confirmed = checkpoint.files[0].lines_done
    # Every row read was flushed before exiting, and the checkpoint says so exactly.
    assert confirmed == summary["rows_read"] == summary["delivered"] == collector.stats.messages_stored
    assert 2 * CHUNK <= confirmed < ROWS
    assert sorted(by_n(collector.messages())) == list(range(confirmed))

    resumed = run_cli([*_args(path, collector), "--resume"], cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["skipped_resume"] == confirmed
    assert summary["delivered"] == ROWS - confirmed
    assert sorted(by_n(collector.messages())) == list(range(ROWS))
    assert collector.stats.duplicates == 0  # nothing confirmed was sent again


def test_sigterm_stops_like_ctrl_c_with_status_143(collector: Collector, workdir: Path) -> None:
    path = write_jsonl(workdir / "events.jsonl", track_rows(ROWS))
    terminated = run_cli(_args(path, collector), stop="sigterm-after-checkpoints=2", cwd=workdir)
    assert terminated.returncode == 143, terminated.stderr
    summary = json.loads(terminated.stdout)
    assert summary["status"] == "interrupted"
    checkpoint = Checkpoint.load(str(workdir / "events.jsonl.checkpoint.json"))
    assert checkpoint is not None
    # As with Ctrl-C: every row read was delivered and confirmed before exiting.
    assert checkpoint.files[0].lines_done == summary["rows_read"] == summary["delivered"]
    assert 2 * CHUNK <= summary["rows_read"] < ROWS


def test_ctrl_c_delivers_the_queued_backlog_before_checkpointing(collector: Collector, workdir: Path) -> None:
    path = write_jsonl(workdir / "events.jsonl", track_rows(600))
    slow = {"transport": SlowTransport, "upload_size": 10, "max_batch_size": 10, "max_queue_size": 100}
    summary = run_import(
        [str(path)],
        write_key=WRITE_KEY,
        host=collector.url,
        chunk_size=50,
        client_options=slow,
        on_checkpoint=stop_after("sigint-after-checkpoints=2"),
    )
    assert summary.status == "interrupted" and summary.exit_code == 130
    assert summary.undelivered == 0
    checkpoint = Checkpoint.load(str(workdir / "events.jsonl.checkpoint.json"))
    assert checkpoint is not None
    # Up to 100 queued messages were waiting when the interrupt came: all were delivered, then confirmed.
    assert checkpoint.files[0].lines_done == summary.rows_read == summary.delivered
    assert sorted(by_n(collector.messages())) == list(range(summary.rows_read))
    assert 100 <= summary.rows_read < 600


def test_resume_refuses_a_different_file_or_shard(collector: Collector, workdir: Path) -> None:
    path = write_jsonl(workdir / "events.jsonl", track_rows(10))
    run_import([str(path)], write_key=WRITE_KEY, host=collector.url)
    write_jsonl(path, track_rows(10, start=100))
    try:
        run_import([str(path)], write_key=WRITE_KEY, host=collector.url, resume=True)
    except ImportConfigError as exc:
        assert "content differs" in str(exc)
    else:
        raise AssertionError("resume accepted a changed file")
    checkpoint = str(workdir / "events.jsonl.checkpoint.json")
    try:
        run_import(
            [str(path)],
            write_key=WRITE_KEY,
            host=collector.url,
            resume=True,
            shard="1/2",
            checkpoint=checkpoint,
        )
    except ImportConfigError as exc:
        assert "shard" in str(exc)
    else:
        raise AssertionError("resume accepted another shard")


def test_resume_of_a_finished_import_sends_nothing(collector: Collector, workdir: Path) -> None:
    path = write_jsonl(workdir / "events.jsonl", track_rows(25))
    run_import([str(path)], write_key=WRITE_KEY, host=collector.url, chunk_size=10)
    again = run_import([str(path)], write_key=WRITE_KEY, host=collector.url, chunk_size=10, resume=True)
    assert (again.skipped_resume, again.sent) == (25, 0)
    assert collector.stats.messages_received == 25


def test_resume_continues_into_lines_appended_since(collector: Collector, workdir: Path) -> None:
    rows = track_rows(3000)
    path = write_jsonl(workdir / "events.jsonl", rows[:2500])  # more than the 64 KiB the file key hashes
    run_import([str(path)], write_key=WRITE_KEY, host=collector.url)
    write_jsonl(path, rows)
    more = run_import([str(path)], write_key=WRITE_KEY, host=collector.url, resume=True)
    assert (more.skipped_resume, more.delivered) == (2500, 500)
    assert sorted(by_n(collector.messages())) == list(range(3000))


def test_checkpoint_save_fsyncs_the_directory_after_the_rename(tmp_path, monkeypatch) -> None:
    # Without a directory fsync, a crash after os.replace can leave the old checkpoint
    # (or none) on disk although the new one was reported saved.
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    Checkpoint(str(tmp_path / "c.checkpoint.json")).save()
    assert events == ["fsync file", "replace", "fsync dir"]
    assert Checkpoint.load(str(tmp_path / "c.checkpoint.json")) is not None


def test_after_a_crash_and_resume_each_rejected_line_is_in_the_rejects_file_once(
    collector: Collector, workdir: Path
) -> None:
    rows: list[object] = list(track_rows(ROWS))
    bad_lines = list(range(7, ROWS + 1, 30))  # 100 bad lines, spread over every chunk
    for line in bad_lines:
        # Long enough that each record reaches the disk at once, as buffered ones do in a long import.
        rows[line - 1] = f"not json {line} " + "x" * 10_000
    path = write_jsonl(workdir / "events.jsonl", rows)
    crashed = run_cli(_args(path, collector), stop="exit-after-checkpoints=3", cwd=workdir)
    assert crashed.returncode == 86, crashed.stderr
    rejects = workdir / "events.jsonl.rejects.jsonl"
    # The reader ran ahead of the last checkpoint: rows it rejected there are read again on resume.
    resumed = run_cli([*_args(path, collector), "--resume"], cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr
    records = read_jsonl(rejects)
    assert sorted(r["line"] for r in records) == bad_lines
    assert [r["line"] for r in records] == bad_lines  # in file order
    assert records[0]["row"].startswith("not json 7 x")
    assert len(by_n(collector.messages())) == ROWS - len(bad_lines)


class RejectRows:
    """A transport that answers 400 to batches holding a row whose ``properties.n`` is in ``bad``."""

    def __init__(self, bad: set[int]) -> None:
        self.bad = bad
        self.inner = SlowTransport()

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> TransportResponse:
        if any(m["properties"]["n"] in self.bad for m in json.loads(body)["batch"]):
            return TransportResponse(400, {}, b'{"code": "invalid", "message": "bad row"}')
        return self.inner.post(url, body, headers, timeout)

    def abort(self) -> None:
        self.inner.abort()

    def close(self) -> None:
        self.inner.close()


class Crash(BaseException):
    """Stands for the process dying right after a checkpoint (no cleanup of ours runs after it)."""


def test_server_rejections_after_an_abrupt_stop_and_resume_are_recorded_once(
    collector: Collector, workdir: Path
) -> None:
    bad = set(range(5, 600, 25))  # rows the server refuses, in every chunk
    path = write_jsonl(workdir / "events.jsonl", track_rows(600))
    one_per_request = {
        "transport": lambda: RejectRows(bad),
        "upload_size": 1,
        "max_batch_size": 1,
        "max_queue_size": 100,
    }
    written = []

    def crash_after_two(checkpoint: Checkpoint) -> None:
        written.append(checkpoint)
        if len(written) == 2:
            raise Crash

    common = {
        "write_key": WRITE_KEY,
        "host": collector.url,
        "chunk_size": 50,
        "client_options": one_per_request,
    }
    with pytest.raises(Crash):
        run_import([str(path)], on_checkpoint=crash_after_two, **common)
    summary = run_import([str(path)], resume=True, **common)
    assert summary.status == "completed"
    records = read_jsonl(workdir / "events.jsonl.rejects.jsonl")
    assert sorted(r["row"]["properties"]["n"] for r in records) == sorted(bad)
    assert {r["stage"] for r in records} == {"server"}


class RecordingProgress:
    """A progress reporter that keeps every snapshot (updates as often as the engine offers them)."""

    interval_s = 0.0

    def __init__(self) -> None:
        self.snapshots: list[Snapshot] = []

    def update(self, snapshot: Snapshot) -> None:
        self.snapshots.append(snapshot)

    def close(self, snapshot: Snapshot) -> None:
        self.snapshots.append(snapshot)


def test_the_eta_on_resume_counts_only_this_runs_progress(collector: Collector, workdir: Path) -> None:
    rows = track_rows(4000)
    path = write_jsonl(workdir / "events.jsonl", rows[:3600])
    run_import([str(path)], write_key=WRITE_KEY, host=collector.url)
    write_jsonl(path, rows)  # 400 rows more to import on resume
    skipped_bytes = sum(len(line) for line in path.read_bytes().splitlines(keepends=True)[:3600])
    recorder = RecordingProgress()
    summary = run_import([str(path)], write_key=WRITE_KEY, host=collector.url, resume=True, progress=recorder)
    assert (summary.skipped_resume, summary.delivered) == (3600, 400)
    during = [s for s in recorder.snapshots[:-1] if s.rows_read > 3600]
    assert during, "no progress reported after the skipped rows"
    for snap in during:
        assert snap.skipped_bytes == skipped_bytes  # exactly the bytes of the 3,600 rows skipped
        assert 0 < snap.skipping_s <= snap.elapsed_s
        assert snap.position is not None and snap.total_bytes == path.stat().st_size
        done, left = snap.position - skipped_bytes, snap.total_bytes - snap.position
        # This run's pace, not the 90 % the skipped rows make the file look done.
        assert snap.eta_s == pytest.approx((snap.elapsed_s - snap.skipping_s) * left / done)


def test_eta_arithmetic_with_skipped_rows() -> None:
    # 900 of 1,000 bytes were skipped in 2 s; 50 more took 10 s: 50 left take 10 s more, not 0.6 s.
    snap = Snapshot(
        elapsed_s=12.0,
        rows_read=95,
        sent=5,
        delivered=5,
        rejected=0,
        skipped=90,
        position=950,
        total_bytes=1000,
        skipped_bytes=900,
        skipping_s=2.0,
    )
    assert snap.eta_s == pytest.approx(10.0)
    assert snap.fraction == 0.95  # the bar still shows the whole file's progress
    assert "95%, ETA 0:00:10" in describe(snap)


def _crash_after(count: int):  # type: ignore[no-untyped-def]
    written: list[Checkpoint] = []

    def on_checkpoint(checkpoint: Checkpoint) -> None:
        written.append(checkpoint)
        if len(written) == count:
            raise Crash

    return on_checkpoint


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


@pytest.mark.parametrize("edit", ["insert", "delete", "change"])
def test_resume_refuses_a_file_edited_beyond_its_first_64_kib_within_the_confirmed_lines(
    collector: Collector, workdir: Path, edit: str
) -> None:
    path = write_jsonl(workdir / "events.jsonl", track_rows(ROWS))
    common = {"write_key": WRITE_KEY, "host": collector.url, "chunk_size": CHUNK}
    with pytest.raises(Crash):
        run_import([str(path)], on_checkpoint=_crash_after(3), **common)
    checkpoint = Checkpoint.load(str(workdir / "events.jsonl.checkpoint.json"))
    assert checkpoint is not None
    confirmed = checkpoint.files[0].lines_done
    assert confirmed >= 3 * CHUNK
    lines = _lines(path)
    at = confirmed - 50  # past the 64 KiB the file key hashes, before the checkpoint's line
    assert sum(len(line) for line in lines[:at]) > 64 * 1024
    if edit == "insert":
        lines.insert(at, json.dumps(track_rows(1, start=9000)[0]).encode() + b"\n")
    elif edit == "delete":
        del lines[at]
    else:
        lines[at] = lines[at].replace(b"Order Completed", b"Order Completes")
    path.write_bytes(b"".join(lines))
    received = collector.stats.messages_received
    with pytest.raises(ImportConfigError) as caught:
        run_import([str(path)], resume=True, **common)
    assert str(path) in str(caught.value)
    assert f"first {confirmed:,} lines" in str(caught.value)
    assert "run without --resume" in str(caught.value)
    assert collector.stats.messages_received == received  # nothing was sent


def test_resume_accepts_an_edit_after_the_confirmed_lines(collector: Collector, workdir: Path) -> None:
    path = write_jsonl(workdir / "events.jsonl", track_rows(ROWS))
    common = {"write_key": WRITE_KEY, "host": collector.url, "chunk_size": CHUNK, "max_errors": 0}
    with pytest.raises(Crash):
        run_import([str(path)], on_checkpoint=_crash_after(2), **common)
    checkpoint = Checkpoint.load(str(workdir / "events.jsonl.checkpoint.json"))
    assert checkpoint is not None and checkpoint.files[0].read_sha256 is not None
    confirmed = checkpoint.files[0].lines_done
    lines = _lines(path)
    del lines[-1]  # rows not yet read may change: they have not been sent under their line numbers
    path.write_bytes(b"".join(lines))
    summary = run_import([str(path)], resume=True, **common)
    assert summary.status == "completed"
    assert (summary.skipped_resume, summary.rows_read) == (confirmed, ROWS - 1)
    assert sorted(by_n(collector.messages())) == list(range(ROWS - 1))


def test_resume_refuses_a_csv_edited_within_the_confirmed_lines(collector: Collector, workdir: Path) -> None:
    path = workdir / "events.csv"
    pad = "p" * 150  # the edit must lie past the 64 KiB the file key hashes
    rows = [f"u{i},Paid,2024-05-01T10:00:{i % 60:02d}Z,{i},{pad}\n" for i in range(ROWS)]
    header = "userId,event,timestamp,properties.n:int,properties.pad\n"
    path.write_text(header + "".join(rows), encoding="utf-8")
    common = {"write_key": WRITE_KEY, "host": collector.url, "chunk_size": CHUNK, "type": "track"}
    with pytest.raises(Crash):
        run_import([str(path)], on_checkpoint=_crash_after(3), **common)
    checkpoint = Checkpoint.load(str(workdir / "events.csv.checkpoint.json"))
    assert checkpoint is not None
    confirmed = checkpoint.files[0].lines_done
    rows[confirmed - 20] = rows[confirmed - 20].replace("Paid", "Paix")
    path.write_text(header + "".join(rows), encoding="utf-8")
    with pytest.raises(ImportConfigError, match="changed since the checkpoint"):
        run_import([str(path)], resume=True, **common)
    rows[confirmed - 20] = rows[confirmed - 20].replace("Paix", "Paid")  # put back: resume goes on
    path.write_text(header + "".join(rows), encoding="utf-8")
    summary = run_import([str(path)], resume=True, **common)
    assert (summary.status, summary.skipped_resume) == ("completed", confirmed - 1)
    assert sorted(by_n(collector.messages())) == list(range(ROWS))


def test_the_read_digest_is_the_sha256_of_the_rows_up_to_the_line_asked() -> None:
    import hashlib
    import random

    from segment_lite.importer.sources import ReadDigest

    rng = random.Random(7)
    lines = [rng.randbytes(rng.randint(0, 80)) + b"\n" for _ in range(5000)]
    digest = ReadDigest()
    asked = 0
    for n, line in enumerate(lines, 1):
        digest.add(n, line if n % 3 else line.decode("latin-1"))  # text rows are hashed as UTF-8
        if rng.random() < 0.01:
            at = rng.randint(max(asked, n - 5), n)  # the engine asks about a row just read
            expected = b"".join(
                x if i % 3 else x.decode("latin-1").encode() for i, x in enumerate(lines[:at], 1)
            )
            assert digest.digest(at) == hashlib.sha256(expected).hexdigest()
            asked = at
    # A trim cut short (an interrupt after the hash was committed, before the rows were dropped)
    # leaves hashed rows queued: they are not hashed twice.
    digest = ReadDigest()
    for n, line in enumerate(lines[:100], 1):
        digest.add(n, line)
    queued = list(digest._rows)
    digest.digest(40)
    digest._rows.extendleft(reversed(queued[:40]))
    assert digest.digest(100) == hashlib.sha256(b"".join(lines[:100])).hexdigest()
