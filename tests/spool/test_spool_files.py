"""The spool's files: a torn tail or corrupt bytes cost the records they hit, never the process."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spool_helpers import segment_files

from segment_lite.errors import SpoolCorruptError
from segment_lite.ledger import Ledger
from segment_lite.spool.directory import ACK_NAME
from segment_lite.spool.disk import MIN_SEGMENT_BYTES, DiskSpool
from segment_lite.spool.records import (
    ACK_SLOT_BYTES,
    RECORD_HEADER_BYTES,
    SEGMENT_HEADER_BYTES,
    AckFile,
    SegmentReader,
    encode_record,
)

FINGERPRINT = "0123456789abcdef"
SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _spool(root: Path, **options: Any) -> DiskSpool:
    options.setdefault("max_bytes", 1 << 30)
    options.setdefault("wake_at", 100)
    options.setdefault("segment_bytes", MIN_SEGMENT_BYTES)
    return DiskSpool(str(root), fingerprint=FINGERPRINT, **options)


def _messages(count: int, size: int = 120) -> list[bytes]:
    return [b'{"i":%d,"pad":"%s"}' % (i, b"x" * ((i * 37) % size)) for i in range(count)]


class Losses:
    """A ledger that remembers what was reported to on_drop."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self.ledger = Ledger(
            None, logging.getLogger("test"), on_drop=lambda reason, exc, messages: self.errors.append(exc)
        )

    @property
    def corrupt(self) -> int:
        return int(self.ledger.snapshot(0, 0, 0)["dropped"]["spool_corrupt"])


def _leave_on_disk(root: Path, messages: list[bytes]) -> Path:
    """Spool ``messages`` and close without delivering: returns the owner directory left behind."""
    spool = _spool(root)
    for item in messages:
        assert spool.put(item)
    directory = spool.directory
    assert directory is not None
    spool.close()
    return Path(directory)


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
@given(count=st.integers(1, 80), cut=st.floats(0.0, 1.0))
def test_a_torn_last_segment_loses_only_the_torn_record(count: int, cut: float) -> None:
    root = Path(tempfile.mkdtemp())
    try:
        messages = _messages(count)
        directory = _leave_on_disk(root, messages)
        last = segment_files(directory)[-1]
        size = last.stat().st_size
        offset = SEGMENT_HEADER_BYTES + round(cut * (size - SEGMENT_HEADER_BYTES))
        os.truncate(last, offset)  # what a power loss mid-write leaves

        # Which records of the last segment are whole before the cut.
        in_earlier = sum(1 for path in segment_files(directory)[:-1] for _ in _records(path))
        boundaries = [SEGMENT_HEADER_BYTES]
        for item in messages[in_earlier:]:
            boundaries.append(boundaries[-1] + RECORD_HEADER_BYTES + len(item))
        whole = sum(1 for end in boundaries[1:] if end <= offset)
        torn = 0 if offset in boundaries else 1

        taken, losses = _deliver_all(root)
        assert taken == messages[: in_earlier + whole]
        assert losses.corrupt == torn
        assert all(isinstance(error, SpoolCorruptError) for error in losses.errors)
        assert os.listdir(root) == [], "everything readable was delivered and the directories deleted"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _records(path: Path) -> list[bytes]:
    fd = os.open(path, os.O_RDONLY)
    reader = SegmentReader(str(path), fd, SEGMENT_HEADER_BYTES, os.fstat(fd).st_size, sealed=True)
    out = []
    while (record := reader.next()) is not None:
        out.append(record[0])
    reader.close()
    return out


@SETTINGS
@given(
    count=st.integers(1, 60),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 255)), min_size=1, max_size=6),
)
def test_corrupt_bytes_are_skipped_and_counted(count: int, flips: list[tuple[float, int]]) -> None:
    root = Path(tempfile.mkdtemp())
    try:
        messages = _messages(count)
        directory = _leave_on_disk(root, messages)
        segments = segment_files(directory)
        before = [path.read_bytes() for path in segments]
        for where, xor in flips:
            path = segments[int(where * len(segments)) % len(segments)]
            data = bytearray(path.read_bytes())
            position = SEGMENT_HEADER_BYTES + int(where * (len(data) - SEGMENT_HEADER_BYTES - 1))
            data[position] ^= xor
            path.write_bytes(bytes(data))
        changed = before != [path.read_bytes() for path in segments]  # two flips may cancel out

        taken, losses = _deliver_all(root)
        # What comes back is the original messages, byte for byte and in order, minus those hit.
        remaining = iter(messages)
        assert all(any(item == original for original in remaining) for item in taken)
        assert (losses.corrupt >= 1) == changed
        assert len(taken) + losses.corrupt <= count
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_garbage_appended_after_the_last_record_costs_one_record(spool_dir: Path) -> None:
    messages = _messages(20)
    directory = _leave_on_disk(spool_dir, messages)
    with open(segment_files(directory)[-1], "ab") as handle:
        handle.write(encode_record(b'{"torn":true}', 0)[:-5])
    taken, losses = _deliver_all(spool_dir)
    assert taken == messages
    assert losses.corrupt == 1


def test_a_torn_cursor_slot_falls_back_to_the_other_slot(tmp_path: Path) -> None:
    path = tmp_path / ACK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    ack = AckFile(fd)
    ack.write(3, 100)
    ack.write(4, 200)
    assert AckFile(fd).read() == (4, 200)
    # Tear the newest slot (generation 2 lives in slot 0).
    os.pwrite(fd, b"\xff" * 10, 0)
    assert AckFile(fd).read() == (3, 100)
    os.pwrite(fd, b"\xff" * 10, ACK_SLOT_BYTES)
    assert AckFile(fd).read() is None
    os.close(fd)


def test_a_lost_cursor_sends_again_rather_than_losing(spool_dir: Path) -> None:
    messages = _messages(30)
    spool = _spool(spool_dir)
    for item in messages:
        spool.put(item)
    batch = spool.take(10, 1 << 20)
    assert batch is not None
    spool.done(batch)
    directory = Path(spool.directory or "")
    spool.close()
    (directory / ACK_NAME).write_bytes(b"\x00" * 7)  # unreadable: as if never written
    taken, losses = _deliver_all(spool_dir)
    assert taken == messages, "duplicates (deduplicated by messageId), never a loss"
    assert losses.corrupt == 0


@SETTINGS
@given(count=st.integers(1, 60), cut=st.floats(0.0, 1.0))
def test_power_loss_in_a_reserved_segment_loses_only_the_torn_record(count: int, cut: float) -> None:
    """A killed process leaves its last segment at its reserved size, zero beyond the records.

    A power loss then reads back as zeros from some offset on (the pages never
    written to disk); everything before it is delivered, a record cut by it is
    the one loss, and the reserved zeros are not.
    """
    root = Path(tempfile.mkdtemp())
    try:
        messages = _messages(count)
        spool = _spool(root, segment_bytes=1 << 20)  # one segment, reserved at 256 KiB or more
        for item in messages:
            assert spool.put(item)
        directory = Path(spool.directory or "")
        written_end = SEGMENT_HEADER_BYTES + sum(RECORD_HEADER_BYTES + len(m) for m in messages)
        spool._forget_after_fork()  # as a kill leaves it: nothing truncated, synced or acknowledged
        (segment,) = segment_files(directory)
        assert segment.stat().st_size > written_end, "the segment's space was reserved"
        offset = SEGMENT_HEADER_BYTES + round(cut * (written_end - SEGMENT_HEADER_BYTES))
        with open(segment, "r+b") as handle:
            handle.seek(offset)
            handle.write(bytes(written_end - offset))

        boundaries = [SEGMENT_HEADER_BYTES]
        for item in messages:
            boundaries.append(boundaries[-1] + RECORD_HEADER_BYTES + len(item))
        whole = sum(1 for end in boundaries[1:] if end <= offset)
        taken, losses = _deliver_all(root)
        assert taken == messages[:whole]
        assert losses.corrupt == (0 if offset in boundaries else 1)
    finally:
        shutil.rmtree(root, ignore_errors=True)


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
