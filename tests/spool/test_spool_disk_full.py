"""A full disk: each message the spool cannot write is a counted drop, reported, never a crash."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from spool_helpers import WRITE_KEY

import segment_lite
from segment_lite.collector import Collector
from segment_lite.errors import SpoolWriteError


class DiskFull:
    """Makes writes into one directory fail with ENOSPC while ``full`` is set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
        self.root = str(root)
        self.full = False
        self.refused = 0
        real = os.write

        def write(fd: int, data: Any) -> int:
            if self.full and _path_of(fd).startswith(self.root):
                self.refused += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(fd, data)

        monkeypatch.setattr(os, "write", write)


def _path_of(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def test_enospc_is_a_counted_drop_and_delivery_goes_on(
    monkeypatch: pytest.MonkeyPatch, collector: Collector, spool_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    disk = DiskFull(monkeypatch, spool_dir)
    reports: list[tuple[str, BaseException, list[Any]]] = []
    client = segment_lite.Client(
        WRITE_KEY,
        host=collector.url,
        spool_dir=spool_dir,
        on_drop=lambda reason, exc, messages: reports.append((reason, exc, messages)),
    )
    for i in range(10):
        assert client.track("u", "Before", {"i": i})[0]
    disk.full = True
    with caplog.at_level(logging.ERROR, logger="segment_lite"):
        results = [client.track("u", "Refused", {"i": i}) for i in range(25)]
    assert [ok for ok, _ in results] == [False] * 25
    assert disk.refused == 25
    stats = client.stats()
    assert stats["dropped"]["spool_write_failed"] == 25
    assert stats["dropped"]["queue_full"] == 0, "not counted twice"
    assert stats["accepted"] == 10
    (reason, exc, messages), *_ = reports
    assert reason == "spool_write_failed"
    assert isinstance(exc, SpoolWriteError) and exc.errno == errno.ENOSPC
    assert "No space left on device" in str(exc) and str(spool_dir) in str(exc)
    assert messages[0]["event"] == "Refused" and messages[0]["messageId"] == results[0][1]["messageId"]
    failures = [r for r in caplog.records if "spool_write_failed" in r.getMessage()]
    assert len(failures) == 1, "a full disk is reported once, then at most once per interval"

    disk.full = False  # space is back
    for i in range(10):
        assert client.track("u", "After", {"i": i})[0]
    assert client.flush(timeout=30)
    refused = [m["messageId"] for reason, _, batch in reports for m in batch]
    assert refused == [message["messageId"] for _, message in results], "every refusal is reported"
    events = sorted(m["event"] for m in collector.messages())
    assert events == ["After"] * 10 + ["Before"] * 10
    assert client.shutdown(timeout=10)
    assert not list(spool_dir.iterdir()), "no partial record was left behind"


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
    accepted = sum(results)
    stats = client.stats()
    assert 0 < accepted < 2_000, "some fit, the rest did not"
    assert stats["dropped"]["spool_write_failed"] == 2_000 - accepted
    assert stats["accepted"] == accepted
    collector.go_up()
    assert client.flush(timeout=60)
    assert len(collector.message_ids()) == accepted, "every accepted message is delivered"
    # Delivered segments are deleted, so the disk has room again.
    assert client.track("u", "Tiny", {"i": -1})[0]
    assert client.shutdown(timeout=10)
