"""The spool's journal: replay after a kill, torn and damaged journals, key changes, rotation, settlement."""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import zlib
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spool_helpers import WRITE_KEY, Losses, crash_in_process, kill9, owner_names, python, spooling_child

import segment_lite
from segment_lite.collector import Collector, Faults
from segment_lite.spool import journal, store
from segment_lite.spool.disk import DiskSpool
from segment_lite.spool.factory import key_fingerprint
from segment_lite.spool.status import spool_status

FINGERPRINT = "0123456789abcdef"
# derandomize: the same examples every run (a pass or a failure is reproducible); a small budget.
PARSER_FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _spool(root: Path, fingerprint: str = FINGERPRINT, **options: Any) -> DiskSpool:
    options.setdefault("max_bytes", 1 << 30)
    options.setdefault("wake_at", 10**9)
    return DiskSpool(str(root), fingerprint=fingerprint, **options)


def _messages(count: int, tag: str = "m") -> list[bytes]:
    return [b'{"%s":%d,"pad":"%s"}' % (tag.encode(), i, b"q" * (i % 50)) for i in range(count)]


def _deliver_all(root: Path, fingerprint: str = FINGERPRINT) -> tuple[list[bytes], Losses, int]:
    """Open the spool as the next process does and take everything: (taken, losses, recovered)."""
    losses = Losses()
    spool = _spool(root, fingerprint)
    spool.report_losses_to(losses.ledger)
    recovered = spool.recovered_count()
    taken: list[bytes] = []
    while (batch := spool.take(7, 1 << 20)) is not None:
        taken.extend(batch.items)
        spool.done(batch)
    spool.close()
    return taken, losses, recovered


def _journals(directory: Path) -> list[Path]:
    return [Path(path) for _, path in journal.journal_files(str(directory))]


def _database_rows(directory: Path) -> int:
    """Rows in the database of a dead owner's directory (opened read-only: nothing replayed)."""
    uri = f"file:{directory / store.DATABASE_NAME}?mode=ro"
    connection = sqlite3.connect(uri, uri=True)
    try:
        return int(connection.execute("SELECT count(*) FROM messages").fetchone()[0])
    finally:
        connection.close()


def _killed(root: Path, messages: list[bytes]) -> Path:
    """Spool ``messages`` and leave the directory as a kill -9 does; returns it."""
    spool = _spool(root)
    for item in messages:
        assert spool.put(item)
    directory = Path(spool.directory or "")
    crash_in_process(spool)
    return directory


# -- kill -9 and replay -------------------------------------------------------------------------


def test_a_killed_process_journal_is_replayed_and_delivered_exactly_once(
    tmp_path: Path, collector: Collector, spool_dir: Path
) -> None:
    collector.go_down()  # delivery held back: everything stays in the spool
    with spooling_child(tmp_path, collector.url, spool_dir, 3_000) as (child, owner, ids):
        kill9(child)
    held = _database_rows(Path(owner))
    assert held < 3_000, "some messages were only in the journal: the replay is what brings them back"
    collector.go_up()
    client = segment_lite.Client(WRITE_KEY, host=collector.url, spool_dir=spool_dir)
    assert client.stats()["recovered"] == 3_000
    assert client.flush(timeout=60)
    assert sorted(m["messageId"] for m in collector.messages()) == sorted(ids)
    assert collector.stats.duplicates == 0
    assert client.stats()["dropped"]["spool_corrupt"] == 0
    assert client.shutdown(timeout=10)
    assert owner_names(spool_dir) == []


def test_spool_status_counts_the_journal_records_of_a_dead_owner(
    tmp_path: Path, collector: Collector, spool_dir: Path
) -> None:
    collector.go_down()
    with spooling_child(tmp_path, collector.url, spool_dir, 400) as (child, owner, _):
        kill9(child)
    assert _database_rows(Path(owner)) < 400
    (shown,) = spool_status(str(spool_dir)).owners
    assert not shown.live and shown.messages == 400 and not shown.unreadable
    assert shown.write_key_fingerprints == (key_fingerprint(WRITE_KEY),)
    assert shown.oldest_age_s is not None and shown.nbytes > 400 * 50
    assert _database_rows(Path(owner)) < 400, "status changes nothing"


# -- torn and damaged journals -------------------------------------------------------------------


def test_a_torn_tail_is_not_a_loss_the_records_before_it_come_back(spool_dir: Path) -> None:
    messages = _messages(50)
    directory = _killed(spool_dir, messages)
    (path,) = _journals(directory)
    end = journal.parse(path.read_bytes()).end
    with open(path, "r+b") as handle:  # the last copy never completed: zeros where its end would be
        handle.seek(end - 5)
        handle.write(bytes(5))
    taken, losses, recovered = _deliver_all(spool_dir)
    assert recovered == 49 and taken == messages[:49]
    assert losses.corrupt == 0
    assert owner_names(spool_dir) == []


def test_zeros_where_a_power_loss_left_no_data_are_a_torn_tail(spool_dir: Path) -> None:
    messages = _messages(20)
    directory = _killed(spool_dir, messages)
    (path,) = _journals(directory)
    with open(path, "ab") as handle:
        handle.write(bytes(4096))
    taken, losses, _ = _deliver_all(spool_dir)
    assert taken == messages and losses.corrupt == 0


def test_damage_in_the_middle_keeps_the_records_before_it_and_counts_one_loss(spool_dir: Path) -> None:
    messages = _messages(40)
    directory = _killed(spool_dir, messages)
    (path,) = _journals(directory)
    data = bytearray(path.read_bytes())
    replay = journal.parse(bytes(data))
    assert len(replay.records) == 40
    # Where record 25 starts: the header, then 25 records.
    start = journal.HEADER_SIZE + sum(journal.RECORD_HEAD_SIZE + len(m) for m in messages[:25])
    data[start + journal.RECORD_HEAD_SIZE + 3] ^= 0x55  # a byte of its body
    path.write_bytes(bytes(data))
    taken, losses, recovered = _deliver_all(spool_dir)
    assert recovered == 25 and taken == messages[:25]
    assert losses.corrupt == 1
    (error,) = losses.errors
    assert journal.PREFIX in getattr(error, "path", "")
    assert owner_names(spool_dir) == []
    assert _deliver_all(spool_dir)[1].corrupt == 0, "counted once"


def test_a_journal_without_its_header_is_empty_not_damaged(spool_dir: Path) -> None:
    directory = _killed(spool_dir, _messages(5))
    # Its owner died making the next journal: the file is there, its header not yet written.
    (directory / journal.file_name(2)).write_bytes(b"")
    taken, losses, _ = _deliver_all(spool_dir)
    assert len(taken) == 5 and losses.corrupt == 0


# -- write keys ----------------------------------------------------------------------------------


def test_a_key_change_starts_a_new_journal_and_each_record_goes_to_its_keys_process(spool_dir: Path) -> None:
    first, second = key_fingerprint("key-one"), key_fingerprint("key-two")
    spool = _spool(spool_dir, first)
    before, after = _messages(10, "before"), _messages(15, "after")
    for item in before:
        assert spool.put(item)
    spool.change_write_key("key-two")
    for item in after:
        assert spool.put(item)
    directory = Path(spool.directory or "")
    crash_in_process(spool)
    (path,) = _journals(directory)
    assert path.name == journal.file_name(2), "rotated: the first journal's records are in the database"
    data = path.read_bytes()
    assert journal.parse_header(data) == second
    assert [body for _, _, body in journal.parse(data).records] == after

    taken, _, recovered = _deliver_all(spool_dir, first)
    assert recovered == 10 and taken == before
    assert len(owner_names(spool_dir)) == 1, "the other key's messages wait for its process"
    taken, _, recovered = _deliver_all(spool_dir, second)
    assert recovered == 15 and taken == after
    assert owner_names(spool_dir) == []


def test_a_directory_made_before_journals_is_adopted(spool_dir: Path) -> None:
    # The previous version's database: no journal table, no journal, every message a row.
    directory = spool_dir / "spool-1-0000beef"
    directory.mkdir(parents=True)
    connection = sqlite3.connect(directory / store.DATABASE_NAME)
    connection.execute("CREATE TABLE owner (pid INTEGER, hostname TEXT, created_ms INTEGER)")
    connection.execute(
        "CREATE TABLE messages (id INTEGER PRIMARY KEY, key TEXT NOT NULL, "
        "accepted_ms INTEGER NOT NULL, body BLOB NOT NULL)"
    )
    messages = _messages(30)
    connection.executemany(
        "INSERT INTO messages (id, key, accepted_ms, body) VALUES (?, ?, 1, ?)",
        [(row_id, FINGERPRINT, body) for row_id, body in enumerate(messages, start=1)],
    )
    connection.commit()
    connection.close()
    assert spool_status(str(spool_dir)).messages == 30
    taken, losses, recovered = _deliver_all(spool_dir)
    assert recovered == 30 and taken == messages and losses.corrupt == 0
    assert owner_names(spool_dir) == []


# -- rotation ------------------------------------------------------------------------------------


def _handmade(
    root: Path,
    state: tuple[int, int],
    in_database: list[tuple[int, bytes]],
    journals: dict[int, list[tuple[int, bytes]]],
) -> Path:
    """An orphaned owner directory built by hand: database rows, journal state and journals."""
    directory = root / "spool-1-0000abcd"
    directory.mkdir(parents=True)
    connection = store.connect(str(directory / store.DATABASE_NAME), "NORMAL", create=True)
    store.create_schema(connection, state[0])
    connection.execute("UPDATE journal SET gen = ?, offset = ?", state)
    connection.executemany(
        "INSERT INTO messages (id, key, accepted_ms, body) VALUES (?, ?, 1, ?)",
        [(row_id, FINGERPRINT, body) for row_id, body in in_database],
    )
    connection.close()
    for gen, records in journals.items():
        fd = journal.create(str(directory / journal.file_name(gen)), FINGERPRINT)
        end = journal.HEADER_SIZE
        for row_id, body in records:
            record = journal.encode(row_id, 1, body)
            journal.write(fd, record, end)
            end += len(record)
        os.close(fd)
    return directory


def _size(records: list[tuple[int, bytes]]) -> int:
    return journal.HEADER_SIZE + sum(journal.RECORD_HEAD_SIZE + len(body) for _, body in records)


def test_every_crash_window_of_a_rotation_loses_nothing_and_sends_nothing_twice(tmp_path: Path) -> None:
    messages = _messages(12)
    rows = list(enumerate(messages, start=1))
    old, new = rows[:8], rows[8:]  # journal 1 held rows 1-8; rows 9-12 went to journal 2
    delivered = rows[:3]  # settled before the rotation: neither in the database nor replayed
    moved = rows[3:8]  # moved into the database by the rotation's transaction
    windows: dict[str, tuple[tuple[int, int], list[tuple[int, bytes]], dict[int, Any]]] = {
        # Journal 2 made (and written to), the state not yet committed: journal 1 replays from its offset.
        "before the commit": ((1, _size(delivered)), [], {1: old, 2: new}),
        # Committed (rows moved, state at journal 2), journal 1 not yet deleted: it is not replayed.
        "before the unlink": ((2, journal.HEADER_SIZE), moved, {1: old, 2: new}),
        "after the unlink": ((2, journal.HEADER_SIZE), moved, {2: new}),
        # Journal 2 made, its header not yet written: nothing in it.
        "an empty new journal": ((1, _size(delivered)), [], {1: old, 2: []}),
    }
    for name, (state, in_database, journals) in windows.items():
        root = tmp_path / name.replace(" ", "-")
        directory = _handmade(root, state, in_database, journals)
        if name == "an empty new journal":
            (directory / journal.file_name(2)).write_bytes(b"")
        taken, losses, _ = _deliver_all(root)
        expected = messages[3:8] if name == "an empty new journal" else messages[3:]
        assert taken == expected, name
        assert losses.corrupt == 0, name
        assert owner_names(root) == [], name


def test_a_full_journal_is_replaced_and_the_old_one_deleted(spool_dir: Path) -> None:
    spool = _spool(spool_dir, max_bytes=1 << 20)  # journals of 64 KiB
    directory = Path(spool.directory or "")
    messages = [b'{"i":%d,"pad":"%s"}' % (i, b"r" * 400) for i in range(400)]  # about 170 KiB
    for index, item in enumerate(messages):
        assert spool.put(item)
        if index % 50 == 49:
            spool._tend()  # the sync thread's pass
    assert spool._journal_gen >= 2
    assert [path.name for path in _journals(directory)] == [journal.file_name(spool._journal_gen)]
    first = spool.take(100, 1 << 20)
    assert first is not None
    spool.done(first)
    crash_in_process(spool)
    taken, losses, recovered = _deliver_all(spool_dir)
    assert recovered == 300 and taken == messages[100:]
    assert losses.corrupt == 0


# -- settlement ----------------------------------------------------------------------------------


def test_batches_settled_out_of_order_are_never_sent_again(spool_dir: Path) -> None:
    spool = _spool(spool_dir)
    messages = _messages(100)
    for item in messages:
        assert spool.put(item)
    one, two, three = (spool.take(20, 1 << 20) for _ in range(3))
    assert one is not None and two is not None and three is not None
    spool.done(three)  # before the two in flight: they are moved into the database
    spool.done(one)
    crash_in_process(spool)
    taken, _, recovered = _deliver_all(spool_dir)
    assert recovered == 60
    assert taken == messages[20:40] + messages[60:], "the batch in flight, and what was never taken"


def test_two_workers_deliver_each_message_exactly_once(spool_dir: Path) -> None:
    # Answers take a few ms each, so the two workers' batches overlap and settle in either order.
    with Collector(faults=Faults(delay_s=0.003)) as slow:
        client = segment_lite.Client(
            WRITE_KEY, host=slow.url, spool_dir=spool_dir, thread=2, upload_size=50, upload_interval=0.01
        )
        ids = [client.track("u", "Twice?", {"i": i})[1]["messageId"] for i in range(5_000)]
        assert client.flush(timeout=60)
        stats = client.stats()
        assert client.shutdown(timeout=10)
        received = [m["messageId"] for m in slow.messages()]
        assert set(received) == set(ids), "every message arrived, and nothing else"
        # The spool hands each row out once: a message may come twice only when its request was
        # sent again (a timeout or a reset on a loaded machine), which the client counts.
        duplicates = len(received) - len(set(received))
        assert duplicates == 0 or stats["retried"] > 0, (duplicates, stats)
    assert owner_names(spool_dir) == []


# -- fork ----------------------------------------------------------------------------------------

#: Spools 50 messages, forks a child that spools 40 and exits; the parent spools 30 more and prints
#: the records of every journal under the spool root, by owner directory.
FORKING_SPOOL = r"""
import json, os, sys
from segment_lite.spool import disk, journal
spool = disk.DiskSpool(sys.argv[1], max_bytes=1 << 30, wake_at=10**9, fingerprint="0123456789abcdef")
for i in range(50):
    assert spool.put(b'{"parent":%d}' % i)
inherited = spool._journal_fd
pid = os.fork()
if pid == 0:
    child = disk.DiskSpool(sys.argv[1], max_bytes=1 << 30, wake_at=10**9, fingerprint="0123456789abcdef")
    for i in range(40):
        assert child.put(b'{"child":%d}' % i)
    assert not spool.put(b'{"child via the parent spool":0}'), "the inherited spool refuses"
    closed = spool._journal_fd == -1
    try:
        os.fstat(inherited)
        reused = os.path.realpath("/proc/self/fd/%d" % inherited)
    except OSError:
        reused = None
    with open(sys.argv[2], "w") as handle:
        json.dump({"closed": closed, "inherited_now": reused}, handle)
    child._forget_after_fork()  # leave its journal as a kill would
    os._exit(0)
os.waitpid(pid, 0)
for i in range(30):
    assert spool.put(b'{"parent":%d}' % (50 + i))
found = {}
for name in sorted(os.listdir(sys.argv[1])):
    directory = os.path.join(sys.argv[1], name)
    for _, path in journal.journal_files(directory):
        data = open(path, "rb").read()
        found[directory] = [body.decode() for _, _, body in journal.parse(data).records]
print(json.dumps({"parent": spool.directory, "journal": journal.file_name(spool._journal_gen), "found": found}))
"""


def test_a_forked_child_never_writes_its_parents_journal(spool_dir: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "child.json"
    process = python(FORKING_SPOOL, str(spool_dir), str(report_path))
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 0, out
    report = json.loads(out.splitlines()[-1])
    child = json.loads(report_path.read_text())
    assert child["closed"], "the child let go of the inherited journal"
    parent_journal = os.path.join(report["parent"], report["journal"])
    assert child["inherited_now"] != os.path.realpath(parent_journal), "its descriptor is closed"
    found = report["found"]
    parents = found.pop(report["parent"])
    assert parents == [f'{{"parent":{i}}}' for i in range(80)], "only the parent's records, all of them"
    (childs,) = found.values()
    assert childs == [f'{{"child":{i}}}' for i in range(40)]


# -- the record format ---------------------------------------------------------------------------


def _valid(record: tuple[int, int, bytes]) -> bool:
    row_id, accepted_ms, body = record
    ids = struct.pack("<qq", row_id, accepted_ms)
    encoded = journal.encode(row_id, accepted_ms, body)
    return bool(encoded[4:8] == struct.pack("<I", zlib.crc32(body, zlib.crc32(ids))))


@PARSER_FUZZ
@given(data=st.binary(max_size=2_000), start=st.integers(0, 2_100))
def test_the_parser_never_raises_and_returns_only_records_whose_checksum_holds(
    data: bytes, start: int
) -> None:
    replay = journal.parse(data, start)
    assert all(_valid(record) for record in replay.records)
    assert start <= replay.end <= max(start, len(data))
    try:
        journal.parse_header(data)
    except journal.JournalError:
        pass


@PARSER_FUZZ
@given(
    bodies=st.lists(st.binary(max_size=60), max_size=12),
    cut=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 255)), max_size=3),
)
def test_a_damaged_journal_gives_back_a_prefix_of_what_was_written(
    bodies: list[bytes], cut: float, flips: list[tuple[float, int]]
) -> None:
    written = [(row_id, 1_700_000_000_000 + row_id, body) for row_id, body in enumerate(bodies, start=1)]
    data = bytearray(journal.header(FINGERPRINT) + b"".join(journal.encode(*record) for record in written))
    del data[max(journal.HEADER_SIZE, round(cut * len(data))) :]
    for where, xor in flips:
        position = journal.HEADER_SIZE + int(where * (len(data) - journal.HEADER_SIZE))
        if position < len(data):
            data[position] ^= xor
    replay = journal.parse(bytes(data))
    assert replay.records == written[: len(replay.records)]
    assert journal.parse_header(bytes(data)) == FINGERPRINT


def test_a_header_names_its_key_and_anything_else_is_refused() -> None:
    assert journal.parse_header(journal.header(FINGERPRINT)) == FINGERPRINT
    for bad in (b"", b"SLJRNL\r\n", bytes(journal.HEADER_SIZE), b"x" * 64):
        try:
            journal.parse_header(bad)
        except journal.JournalError:
            continue
        raise AssertionError(f"{bad!r} was taken for a header")
