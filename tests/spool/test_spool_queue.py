"""The disk spool as a MessageQueue: order, acknowledgement, deletion of delivered rows, limits, memory, fsync."""

from __future__ import annotations

import os
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from spool_helpers import crash_in_process, database_rows, owner_names, wait_until

from segment_lite.queue import MemoryQueue
from segment_lite.spool import disk as disk_module
from segment_lite.spool import store
from segment_lite.spool.disk import DiskSpool
from segment_lite.spool.status import spool_status
from segment_lite.spool.store import ROW_OVERHEAD_BYTES

FINGERPRINT = "0123456789abcdef"


def _spool(root: Path, **options: Any) -> DiskSpool:
    options.setdefault("max_bytes", 1 << 30)
    options.setdefault("wake_at", 100)
    return DiskSpool(str(root), fingerprint=FINGERPRINT, **options)


def _messages(count: int, start: int = 0) -> list[bytes]:
    return [b'{"type":"track","i":%d,"pad":"%s"}' % (i, b"p" * 300) for i in range(start, start + count)]


def _take_all(spool: DiskSpool, per_batch: int = 50) -> list[bytes]:
    taken = []
    while (batch := spool.take(per_batch, 1 << 20)) is not None:
        taken.extend(batch.items)
        spool.done(batch)
    return taken


def _rows(spool: DiskSpool) -> int:
    """Rows in the spool's database."""
    return database_rows(spool)


def _crash(spool: DiskSpool) -> None:
    """What a kill leaves: descriptors closed by the kernel, nothing synced, acknowledged or deleted."""
    crash_in_process(spool)


def test_messages_come_back_in_order_and_are_deleted_once_delivered(spool_dir: Path) -> None:
    spool = _spool(spool_dir)
    sent = _messages(200)
    for item in sent:
        assert spool.put(item)
    assert _rows(spool) == 0, "in the journal, not yet moved into the database"
    assert spool.qsize() == 200 and spool.nbytes() == sum(map(len, sent))
    assert spool.disk_bytes() == sum(len(item) + ROW_OVERHEAD_BYTES for item in sent)
    assert _take_all(spool) == sent
    assert _rows(spool) == 0, "delivered before being moved: never inserted"
    for item in sent:
        assert spool.put(item)
    with spool._lock:
        spool._move_pending()  # what the sync thread does once enough is pending
    assert _rows(spool) == 200
    assert _take_all(spool) == sent
    assert _rows(spool) == 0, "delivered rows are deleted"
    assert spool.pending_count() == 0 and spool.disk_bytes() == 0
    assert spool.wait_settled(spool.accepted_count(), 0)
    spool.close()
    assert owner_names(spool_dir) == [], "an emptied spool leaves nothing behind"


def test_take_respects_count_and_bytes(spool_dir: Path) -> None:
    spool = _spool(spool_dir)
    sent = _messages(30)
    for item in sent:
        spool.put(item)
    batch = spool.take(10, 1 << 20)
    assert batch is not None and batch.items == sent[:10] and batch.seq == 0
    three = sum(len(item) + 1 for item in sent[10:13])  # each item plus the comma that joins them
    batch2 = spool.take(100, three)
    assert batch2 is not None and batch2.items == sent[10:13] and batch2.seq == 10
    assert batch2.nbytes == three
    spool.close()


def test_acknowledged_records_are_not_given_again_the_rest_are(spool_dir: Path) -> None:
    spool = _spool(spool_dir)
    sent = _messages(100)
    for item in sent:
        spool.put(item)
    first = spool.take(30, 1 << 20)
    second = spool.take(30, 1 << 20)
    assert first is not None and second is not None
    spool.done(second)  # out of order: its rows are deleted all the same
    _crash(spool)

    successor = _spool(spool_dir)
    assert successor.recovered_count() == 70, "the first batch was in flight, the second delivered"
    successor.close()
    assert owner_names(spool_dir), "kept for the next one"

    spool = _spool(spool_dir)
    again = _take_all(spool)
    assert again == sent[:30] + sent[60:]
    spool.close()

    spool = _spool(spool_dir)
    for item in sent:
        spool.put(item)
    first = spool.take(30, 1 << 20)
    assert first is not None
    spool.done(first)
    _crash(spool)
    successor = _spool(spool_dir)
    assert successor.recovered_count() == 70
    assert _take_all(successor) == sent[30:]
    successor.close()


def test_a_full_spool_refuses_then_makes_room_as_batches_are_delivered(spool_dir: Path) -> None:
    item = _messages(1)[0]
    record = len(item) + ROW_OVERHEAD_BYTES
    spool = _spool(spool_dir, max_bytes=10 * record)
    for _ in range(10):
        assert spool.put(item)
    assert not spool.put(item), "full: refused"
    assert not spool.put(item, block=True, timeout=0.05), "still full after waiting"

    batch = spool.take(4, 1 << 20)
    assert batch is not None
    assert not spool.put(item), "taken is not delivered: the records are still on disk"
    results: list[bool] = []
    waiter = threading.Thread(target=lambda: results.append(spool.put(item, block=True, timeout=10)))
    waiter.start()
    spool.done(batch)
    waiter.join(10)
    assert results == [True]
    spool.close()


def test_a_batch_cut_short_is_taken_again_and_kept_once_draining(spool_dir: Path) -> None:
    spool = _spool(spool_dir)
    sent = _messages(20)
    for item in sent:
        spool.put(item)
    batch = spool.take(5, 1 << 20)
    assert batch is not None
    spool.done(batch, keep=True)  # a deadline cut it short: not delivered, not dropped
    assert spool.pending_count() == 20 and spool.send_due(100)
    again = spool.take(100, 1 << 20)
    assert again is batch
    other = spool.take(100, 1 << 20)
    assert other is not None and len(other) == 15
    spool.done(other)
    assert spool.drain() is None, "a durable queue loses nothing at shutdown"
    spool.done(again, keep=True)
    assert spool.kept_count() == 5
    assert spool.wait_settled(spool.accepted_count(), 0)
    spool.close()
    assert spool.kept_count() == 5
    successor = _spool(spool_dir)
    # Only the kept batch comes again: the one delivered after it was deleted when it settled.
    assert _take_all(successor) == sent[:5]
    successor.close()


def test_close_counts_what_it_leaves(spool_dir: Path) -> None:
    spool = _spool(spool_dir)
    for item in _messages(50):
        spool.put(item)
    out = spool.take(10, 1 << 20)
    assert out is not None
    spool.close()
    assert spool.kept_count() == 50, "40 waiting and 10 in flight stay on disk"
    assert spool.qsize() == 0
    spool.done(out)  # delivered after all, after close: no longer left (sent again next time, though)
    assert spool.kept_count() == 40


def test_memory_held_is_bounded_whatever_the_backlog(spool_dir: Path) -> None:
    def held(make_queue: Any, count: int) -> int:
        queue = make_queue()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            for i in range(count):  # about 330 bytes each, made as an app makes them
                assert queue.put(b'{"type":"track","i":%d,"pad":"%s"}' % (i, b"p" * 300))
            return int(tracemalloc.get_traced_memory()[0] - base)
        finally:
            tracemalloc.stop()
            queue.close()

    in_memory = held(lambda: MemoryQueue(100_000, 1 << 30, wake_at=100), 20_000)
    on_disk = held(lambda: _spool(spool_dir / "a"), 20_000)
    longer = held(lambda: _spool(spool_dir / "b"), 40_000)
    print(f"memory held for 20,000 queued messages: memory queue {in_memory:,} B, spool {on_disk:,} B")
    assert in_memory > 5_000_000
    # Recent rows are kept for take(), pending ones until moved: CACHE_MAX_BYTES at most.
    assert on_disk < disk_module.CACHE_MAX_BYTES * 1.25, on_disk
    assert longer < disk_module.CACHE_MAX_BYTES * 1.25, "a longer backlog is not held longer"


@pytest.mark.parametrize(("fsync", "expected"), [("always", 200), ("never", 0)])
def test_fsync_policies_sync_each_write_or_never(
    spool_dir: Path, monkeypatch: pytest.MonkeyPatch, fsync: str, expected: int
) -> None:
    calls = _count_syncs(monkeypatch)
    spool = _spool(spool_dir, fsync=fsync)
    synchronous = spool._writer.execute("PRAGMA synchronous").fetchone()[0]  # type: ignore[union-attr]
    assert synchronous == {"always": 2, "never": 1}[fsync], "FULL: SQLite syncs each commit; NORMAL: not"
    for item in _messages(200):
        spool.put(item)
    assert spool.syncs == expected
    assert calls["data"] == expected, "'always': the journal is fdatasynced before each put returns"
    spool.close()


def test_always_a_record_whose_fsync_failed_is_taken_back_and_never_comes_again(
    spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = _spool(spool_dir, fsync="always")
    first, refused, later = _messages(3)
    assert spool.put(first)
    real = store.fdatasync
    monkeypatch.setattr(store, "fdatasync", lambda fd: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(Exception) as raised:
        spool.put(refused)
    assert getattr(raised.value, "errno", None) == 5, "refused: not on disk"
    monkeypatch.setattr(store, "fdatasync", real)
    assert spool.put(later), "the journal (its size and mapping intact) takes the next record"
    crash_in_process(spool)
    recovered = _spool(spool_dir, fsync="always")
    batch = recovered.take(10, 1 << 20)
    assert batch is not None and batch.items == [first, later], "the refused record is not replayed"
    recovered.done(batch)
    recovered.close()


def test_batch_fsync_groups_writes_off_the_callers_thread(
    spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_syncs(monkeypatch)
    monkeypatch.setattr(disk_module, "SYNC_INTERVAL_S", 3600.0)  # the first sync, then none for an hour
    spool = _spool(spool_dir, fsync="batch")
    synchronous = spool._writer.execute("PRAGMA synchronous").fetchone()[0]  # type: ignore[union-attr]
    assert synchronous == 1, "NORMAL: a commit does not wait for the disk"
    for item in _messages(200):
        spool.put(item)
    assert disk_module.DiskSpool.pending_count(spool) == 200
    assert threading.get_ident() not in calls["threads"], "the caller never waits for an fsync"
    assert calls["data"] <= 1, calls
    spool.close()
    assert calls["data"] >= 1, "close syncs what is left"


def _count_syncs(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    calls: dict[str, Any] = {"data": 0, "threads": set()}
    real = store.fdatasync

    def counting(fd: int) -> None:
        calls["data"] += 1
        calls["threads"].add(threading.get_ident())
        real(fd)

    monkeypatch.setattr(store, "fdatasync", counting)
    return calls


def test_close_never_waits_forever_for_the_sync_thread(spool_dir: Path) -> None:
    spool = _spool(spool_dir)

    class LateClear(threading.Event):
        """Clears only after close() has asked the sync thread to stop and woken it."""

        def clear(self) -> None:
            spool._stop_syncing.wait(5)
            time.sleep(0.05)  # close() sets _dirty right after the stop
            super().clear()

    spool._dirty = LateClear()
    spool.put(_messages(1)[0])  # starts the sync thread, which is now between its wait and its clear
    closer = threading.Thread(target=spool.close, daemon=True)
    closer.start()
    closer.join(10)
    assert not closer.is_alive(), "close() waited forever for the sync thread"


def test_a_live_spool_publishes_its_counts_for_status(spool_dir: Path) -> None:
    # No other connection can open a live spool's database (SQLite's exclusive mode): status
    # shows what the owner publishes, kept up to date within STATS_INTERVAL_S.
    spool = _spool(spool_dir)
    for item in _messages(50):
        assert spool.put(item)

    def owner() -> Any:
        (only,) = spool_status(str(spool_dir)).owners
        return only

    assert wait_until(lambda: owner().messages == 50, timeout=10)
    shown = owner()
    assert shown.live and shown.pid == os.getpid() and not shown.unreadable
    assert shown.write_key_fingerprints == (FINGERPRINT,) and shown.oldest_age_s is not None
    assert shown.nbytes == spool.disk_bytes()
    batch = spool.take(20, 1 << 20)
    assert batch is not None
    spool.done(batch)
    assert wait_until(lambda: owner().messages == 30, timeout=10), "a settled batch is published too"
    spool.close()
