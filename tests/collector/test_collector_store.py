"""The SQLite event store and the pure Tracking API helpers (timestamps, gzip decoding)."""

from __future__ import annotations

import sqlite3
import threading
import tracemalloc
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from segment_lite.collector.processing import (
    Limits,
    RequestError,
    decode_body,
    parse_timestamp,
    prepare_messages,
)
from segment_lite.collector.store import EventStore
from segment_lite.timestamps import format_utc


def message(n: int, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "messageId": f"m{n}",
        "type": "track",
        "userId": f"u{n % 2}",
        "event": "Clicked" if n % 3 else "Viewed",
        "receivedAt": f"2024-01-01T00:00:{n:02d}.000Z",
    }
    out.update(extra)
    return out


@pytest.fixture
def store() -> Any:
    with EventStore() as s:
        yield s


def test_store_uses_wal_and_a_unique_message_id_column(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    with EventStore(str(path)) as s:
        s.insert_many([message(1)])
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(
                "INSERT INTO events (message_id, type, received_at, body) VALUES ('m1', 'track', 'x', '{}')"
            )
        columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
        assert {"type", "user_id", "anonymous_id", "event", "received_at", "message_id", "body"} <= columns
    finally:
        conn.close()


def test_insert_many_counts_duplicates(store: EventStore) -> None:
    assert store.insert_many([message(1), message(2), message(1)]).stored == 2
    result = store.insert_many([message(2), message(3)])
    assert (result.stored, result.duplicates) == (1, 1)
    assert store.count() == 3
    assert store.message_ids() == {"m1", "m2", "m3"}


def test_query_filters_order_limit_and_after(store: EventStore) -> None:
    store.insert_many([message(n) for n in range(6)])
    store.insert_many([message(10, type="page", userId=None, anonymousId="u1", event=None, name="Home")])
    newest = store.query(limit=2)
    assert [e.message_id for e in newest] == ["m10", "m5"]
    oldest = store.query(limit=2, newest_first=False)
    assert [e.message_id for e in oldest] == ["m0", "m1"]
    # user_id matches userId or anonymousId.
    assert {e.message_id for e in store.query(user_id="u1")} == {"m1", "m3", "m5", "m10"}
    assert {e.message_id for e in store.query(type="page")} == {"m10"}
    assert {e.message_id for e in store.query(event="Viewed")} == {"m0", "m3"}
    assert {e.message_id for e in store.query(type="track", user_id="u0", event="Clicked")} == {"m2", "m4"}
    assert store.count(user_id="u1") == 4
    third = store.query(newest_first=False)[2].id
    after = store.query(after_id=third, newest_first=False, limit=None)
    assert [e.message_id for e in after] == ["m3", "m4", "m5", "m10"]
    assert store.last_id() == after[-1].id
    assert [e.message_id for e in store.query(before_id=third, newest_first=False)] == ["m0", "m1"]


def test_get_messages_and_clear(store: EventStore) -> None:
    store.insert_many([message(1, properties={"a": [1, 2]}), message(2)])
    found = store.get("m1")
    assert found is not None
    assert found.message["properties"] == {"a": [1, 2]}
    assert found.summary()["messageId"] == "m1"
    assert store.get("nope") is None
    assert [m["messageId"] for m in store.messages()] == ["m1", "m2"]
    store.clear()
    assert store.count() == 0
    assert store.last_id() >= 0


def test_concurrent_inserts_from_many_threads(store: EventStore) -> None:
    def work(base: int) -> None:
        for n in range(50):
            store.insert_many([message(base + n)])

    threads = [threading.Thread(target=work, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count() == 200


def test_temporary_store_is_deleted_on_close() -> None:
    s = EventStore()
    path = Path(s.path)
    s.insert_many([message(1)])
    assert path.exists()
    s.close()
    assert not path.exists()
    assert s.closed
    with pytest.raises(RuntimeError):
        s.count()


def test_a_second_process_style_reader_sees_committed_rows(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    with EventStore(path) as writer, EventStore(path) as reader:
        writer.insert_many([message(1)])
        assert reader.message_ids() == {"m1"}


# -- timestamps ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=timezone.utc)),
        ("2024-05-01T12:00:00.5Z", datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=timezone.utc)),
        ("2024-05-01T12:00:00.123456789Z", datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)),
        ("2024-05-01T14:00:00+02:00", datetime(2024, 5, 1, 12, tzinfo=timezone.utc)),
        ("2024-05-01T07:30:00-0430", datetime(2024, 5, 1, 12, tzinfo=timezone.utc)),
        ("2024-05-01 12:00:00", datetime(2024, 5, 1, 12, tzinfo=timezone.utc)),
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=timezone.utc)),
    ],
)
def test_parse_timestamp(text: str, expected: datetime) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize("text", ["yesterday", "2024-05-01T12", "1714564800", ""])
def test_parse_timestamp_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


def test_format_utc_uses_ms_unless_finer_precision_is_needed() -> None:
    # The collector writes receivedAt (and rewritten timestamps) with format_utc.
    base = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
    assert format_utc(base) == "2024-05-01T12:00:00.000Z"
    assert format_utc(base + timedelta(microseconds=1500)) == "2024-05-01T12:00:00.001500Z"
    plus_two = timezone(timedelta(hours=2))
    assert format_utc(datetime(2024, 5, 1, 14, tzinfo=plus_two)) == "2024-05-01T12:00:00.000Z"


def test_prepare_messages_truncates_received_at_to_milliseconds() -> None:
    received = datetime(2024, 5, 1, 12, 0, 0, 123999, tzinfo=timezone.utc)
    (out,) = prepare_messages("track", {"userId": "u", "event": "e"}, received)
    assert out["receivedAt"] == "2024-05-01T12:00:00.123Z"
    assert out["timestamp"] == out["receivedAt"]


def test_custom_limits_apply() -> None:
    limits = Limits(max_message_bytes=100, max_batch_bytes=1000, max_batch_messages=2)
    now = datetime(2024, 5, 1, tzinfo=timezone.utc)
    small = {"type": "track", "userId": "u", "event": "e"}
    with pytest.raises(RequestError) as too_many:
        prepare_messages("batch", {"batch": [small] * 3}, now, limits)
    assert (too_many.value.status, too_many.value.code) == (413, "too_many_messages")
    with pytest.raises(RequestError) as too_big:
        prepare_messages("batch", {"batch": [{**small, "properties": {"x": "y" * 100}}]}, now, limits)
    assert (too_big.value.status, too_big.value.code) == (400, "message_too_large")


# -- gzip -----------------------------------------------------------------------------------


def test_decode_body_inflates_bombs_only_up_to_the_limit() -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"\0" * (1024 * 1024)
    bomb = b"".join(packer.compress(zeros) for _ in range(100)) + packer.flush()  # 100 MiB inflated
    tracemalloc.start()
    try:
        with pytest.raises(RequestError) as refused:
            decode_body(bomb, "gzip", 512_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.status == 413
    assert peak < 4 * 1024 * 1024  # never near the 100 MiB the body would inflate to


def test_decode_body_passes_identity_and_checks_its_size() -> None:
    assert decode_body(b"abc", None, 10) == b"abc"
    assert decode_body(b"abc", "identity", 10) == b"abc"
    with pytest.raises(RequestError) as refused:
        decode_body(b"x" * 11, None, 10)
    assert refused.value.status == 413


def test_decode_body_rejects_truncated_gzip() -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    whole = packer.compress(b'{"batch": []}') + packer.flush()
    with pytest.raises(RequestError) as refused:
        decode_body(whole[:-6], "gzip", 1000)
    assert refused.value.code == "invalid_gzip"
