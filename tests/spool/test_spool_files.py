"""The spool's files: a torn WAL or a damaged database costs messages, never the process, and is counted."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spool_helpers import Losses, owner_names

from segment_lite.errors import SpoolCorruptError
from segment_lite.spool.disk import DiskSpool
from segment_lite.spool.status import spool_status
from segment_lite.spool.store import DATABASE_NAME

FINGERPRINT = "0123456789abcdef"
SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _spool(root: Path, **options: Any) -> DiskSpool:
    options.setdefault("max_bytes", 1 << 30)
    options.setdefault("wake_at", 100)
    return DiskSpool(str(root), fingerprint=FINGERPRINT, **options)


def _messages(count: int, size: int = 120) -> list[bytes]:
    return [b'{"i":%d,"pad":"%s"}' % (i, b"x" * ((i * 37) % size)) for i in range(count)]


def _killed_image(root: Path, messages: list[bytes], image: Path, moved: int = 0) -> Path:
    """Spool ``messages``, then copy the owner directory as a kill leaves it (nothing checkpointed).

    The first ``moved`` messages are moved into the database (its WAL) first, as
    the sync thread does once enough are pending. Returns the copy's directory, under ``image``.
    """
    spool = _spool(root)
    for index, item in enumerate(messages):
        assert spool.put(item)
        if index + 1 == moved:
            with spool._lock:
                spool._move_pending()
    source = Path(spool.directory or "")
    copy = image / source.name
    copy.mkdir(parents=True)
    for name in os.listdir(source):
        if name == DATABASE_NAME or name.startswith((DATABASE_NAME + "-wal", "journal-")):
            shutil.copyfile(source / name, copy / name)
    spool.close()
    return copy


def _deliver_all(root: Path) -> tuple[list[bytes], Losses]:
    """Open the spool again, as the next process does, and take everything it adopted."""
    losses = Losses()
    spool = _spool(root)
    spool.report_losses_to(losses.ledger)
    taken: list[bytes] = []
    while (batch := spool.take(7, 1 << 20)) is not None:
        taken.extend(batch.items)
        spool.done(batch)
    assert spool.pending_count() == 0
    spool.close()
    return taken, losses


@SETTINGS
@given(count=st.integers(1, 80), moved=st.floats(0.0, 1.0), cut=st.floats(0.0, 1.0))
def test_a_torn_wal_loses_nothing_the_journal_holds(count: int, moved: float, cut: float) -> None:
    """A power loss tears the WAL's tail: SQLite keeps every transaction before the tear, whole, and
    the journal state with them, so the journal gives back the rows the lost transactions moved."""
    work = Path(tempfile.mkdtemp())
    try:
        messages = _messages(count)
        directory = _killed_image(work / "live", messages, work / "image", moved=round(moved * count))
        wal = directory / (DATABASE_NAME + "-wal")
        os.truncate(wal, round(cut * wal.stat().st_size))
        taken, losses = _deliver_all(work / "image")
        assert taken == messages, "all of them, in order, byte for byte"
        assert losses.corrupt == 0
        assert owner_names(work / "image") == [], "delivered, then deleted"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_a_killed_processs_messages_come_back_whole(spool_dir: Path, tmp_path: Path) -> None:
    messages = _messages(300)
    _killed_image(tmp_path / "live", messages, spool_dir)
    taken, losses = _deliver_all(spool_dir)
    assert taken == messages
    assert losses.corrupt == 0


@SETTINGS
@given(
    count=st.integers(1, 60),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 255)), min_size=1, max_size=6),
)
def test_damaged_bytes_never_crash_the_client_and_an_unreadable_database_is_counted(
    count: int, flips: list[tuple[float, int]]
) -> None:
    work = Path(tempfile.mkdtemp())
    try:
        messages = _messages(count)
        spool = _spool(work)
        for item in messages:
            spool.put(item)
        database = Path(spool.directory or "") / DATABASE_NAME
        spool.close()  # the messages stay, checkpointed into the database file
        data = bytearray(database.read_bytes())
        for where, xor in flips:
            data[int(where * (len(data) - 1))] ^= xor
        database.write_bytes(bytes(data))

        taken, losses = _deliver_all(work)
        assert len(taken) <= count
        if losses.corrupt:
            assert all(isinstance(error, SpoolCorruptError) for error in losses.errors)
            set_aside = any(name.startswith("unreadable-") for name in os.listdir(work))
            # A damaged journal state (its offset) makes the journal unreadable from there: counted too.
            in_journal = all("journal-" in error.path for error in losses.errors)  # type: ignore[attr-defined]
            assert set_aside or in_journal, "an unreadable database is set aside, kept"
        spool_status(str(work))  # and the status command reads what is left without failing
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_a_database_that_is_not_one_is_set_aside_and_counted(spool_dir: Path) -> None:
    spool = _spool(spool_dir)
    for item in _messages(20):
        spool.put(item)
    directory = Path(spool.directory or "")
    spool.close()
    (directory / DATABASE_NAME).write_bytes(b"not a database at all" * 100)
    status = spool_status(str(spool_dir))
    assert status.owners[0].unreadable
    taken, losses = _deliver_all(spool_dir)
    assert taken == []
    assert losses.corrupt == 1
    (error,) = losses.errors
    assert isinstance(error, SpoolCorruptError) and "unreadable-" in error.path
    assert owner_names(spool_dir) == [], "never tried again"
    assert [name for name in os.listdir(spool_dir) if name.startswith("unreadable-")]


def test_a_directory_of_another_format_is_left_alone(spool_dir: Path) -> None:
    older = spool_dir / "spool-1-aaaaaaaa"
    older.mkdir(parents=True)
    (older / "0000000000000001.seg").write_bytes(b"SLSPOOL\x01")
    spool = _spool(spool_dir)
    assert spool.recovered_count() == 0
    spool.close()
    assert (older / "0000000000000001.seg").exists(), "never deleted: its messages are not ours to drop"


def test_a_directory_being_created_is_not_mistaken_for_an_abandoned_one(spool_dir: Path) -> None:
    spool_dir.mkdir()
    fresh = spool_dir / ".new-spool-1-aaaaaaaa"
    old = spool_dir / ".new-spool-2-bbbbbbbb"
    for staging in (fresh, old):
        staging.mkdir()
        (staging / "lock").write_bytes(b"")  # created, not yet locked by its (slow) creator
    os.utime(old, (0, 0))
    spool = _spool(spool_dir)
    assert fresh.exists(), "a directory another process is creating right now is left alone"
    assert not old.exists(), "one abandoned long ago is removed"
    spool.close()
