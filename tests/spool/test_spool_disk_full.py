"""A full disk: each message the spool cannot write is a counted drop, reported, never a crash."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
from spool_helpers import WRITE_KEY

import segment_lite
from segment_lite.collector import Collector
from segment_lite.errors import SpoolWriteError
from segment_lite.spool import journal
from segment_lite.spool.disk import DiskSpool


class DiskFull:
    """Makes the spool's disk full while ``full`` is set.

    Its journal takes a few more records (``ROOM`` bytes), then refuses every
    write with ``ENOSPC``, as a full disk does (the write is what fails, so the
    journal's own ``write()`` is stood in for); its database cannot grow
    (``PRAGMA max_page_count``: SQLite answers SQLITE_FULL, as on a full disk).
    """

    ROOM = 8 * 1024

    def __init__(self, spool: DiskSpool, monkeypatch: pytest.MonkeyPatch) -> None:
        self.spool = spool
        self._limit: Optional[int] = None
        real = journal.append

        def append(fd: int, data: bytes, end: int) -> None:
            if self._limit is not None and end + len(data) > self._limit:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real(fd, data, end)

        monkeypatch.setattr(journal, "append", append)

    @property
    def full(self) -> bool:
        return self._limit is not None

    @full.setter
    def full(self, value: bool) -> None:
        writer = self.spool._writer
        assert writer is not None
        with self.spool._lock:
            self._limit = self.spool._journal_end + self.ROOM if value else None
            pages = writer.execute("PRAGMA page_count").fetchone()[0]
            writer.execute(f"PRAGMA max_page_count={pages if value else 2**31}")


def test_enospc_is_a_counted_drop_and_delivery_goes_on(
    collector: Collector, spool_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports: list[tuple[str, BaseException, list[Any]]] = []
    client = segment_lite.Client(
        WRITE_KEY,
        host=collector.url,
        spool_dir=spool_dir,
        on_drop=lambda reason, exc, messages: reports.append((reason, exc, messages)),
    )
    assert isinstance(client.queue, DiskSpool)
    disk = DiskFull(client.queue, monkeypatch)
    for i in range(10):
        assert client.track("u", "Before", {"i": i})[0]
    assert client.flush(timeout=30)
    disk.full = True
    with caplog.at_level(logging.ERROR, logger="segment"):
        results = [client.track("u", "Full", {"i": i}) for i in range(1_000)]
    accepted = [message for ok, message in results if ok]
    refused = [message for ok, message in results if not ok]
    assert accepted and len(refused) >= 500, "what fits in the room left, then nothing"
    assert results[-1][0] is False
    stats = client.stats()
    assert stats["dropped"]["spool_write_failed"] == len(refused)
    assert stats["dropped"]["queue_full"] == 0, "not counted twice"
    assert stats["accepted"] == 10 + len(accepted)
    (reason, exc, messages), *_ = reports
    assert reason == "spool_write_failed"
    assert isinstance(exc, SpoolWriteError) and exc.errno == errno.ENOSPC
    assert "No space left on device" in str(exc) and str(spool_dir) in str(exc)
    assert messages[0]["event"] == "Full" and messages[0]["messageId"] == refused[0]["messageId"]
    failures = [r for r in caplog.records if "spool_write_failed" in r.getMessage()]
    assert len(failures) == 1, "a full disk is reported once, then at most once per interval"

    disk.full = False  # space is back
    for i in range(10):
        assert client.track("u", "After", {"i": i})[0]
    assert client.flush(timeout=30)
    reported = [m["messageId"] for reason, _, batch in reports for m in batch]
    assert reported == [m["messageId"] for m in refused], "every refusal is reported"
    delivered = collector.message_ids()
    assert {m["messageId"] for m in accepted} <= delivered
    assert len(delivered) == 10 + len(accepted) + 10
    assert client.shutdown(timeout=10)
    assert not list(spool_dir.iterdir()), "nothing was left behind"


@pytest.fixture
def tiny_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs, when this process may mount one (root on Linux); skipped otherwise."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tiny tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def test_a_really_full_filesystem(tiny_filesystem: Path, collector: Collector) -> None:
    collector.go_down()
    client = segment_lite.Client(WRITE_KEY, host=collector.url, spool_dir=tiny_filesystem / "spool")
    results = [client.track("u", "Tiny", {"i": i, "pad": "x" * 300})[0] for i in range(2_000)]
    assert not any(results[-100:]), "the disk filled up"
    accepted = sum(results)
    stats = client.stats()
    assert 0 < accepted < 2_000, "some fit, the rest did not"
    assert stats["dropped"]["spool_write_failed"] == 2_000 - accepted
    assert stats["accepted"] == accepted
    collector.go_up()
    assert client.flush(timeout=60)
    assert len(collector.message_ids()) == accepted, "every accepted message is delivered"
    # Everything delivered: the journal and database are made again, so the disk has room again.
    assert client.track("u", "Tiny", {"i": -1})[0]
    assert client.shutdown(timeout=10)
