"""The spool options of Client and of the module, and what stats() says with a spool."""

from __future__ import annotations

from pathlib import Path

import pytest
from spool_helpers import WRITE_KEY

import segment_lite
from segment_lite.collector import Collector
from segment_lite.errors import QueueFullError, SpoolError, ValidationError
from segment_lite.options import SPOOL_MAX_RETRIES
from segment_lite.queue import MemoryQueue
from segment_lite.spool import DiskSpool


def test_spool_dir_gives_the_client_a_disk_spool(collector: Collector, spool_dir: Path) -> None:
    client = segment_lite.Client(WRITE_KEY, host=collector.url, spool_dir=spool_dir, spool_fsync="never")
    queue = client.queue
    assert isinstance(queue, DiskSpool) and queue.durable
    assert queue.fsync == "never"
    assert Path(queue.directory or "").parent == spool_dir
    assert client.track("u", "Spooled")[0]
    assert client.flush(timeout=10)
    assert len(collector.message_ids()) == 1
    client.shutdown(timeout=5)


def test_the_module_settings_reach_the_default_client(collector: Collector, spool_dir: Path) -> None:
    segment_lite.write_key = WRITE_KEY
    segment_lite.host = collector.url
    segment_lite.spool_dir = str(spool_dir)
    segment_lite.spool_max_bytes = 1 << 20
    segment_lite.spool_fsync = "always"
    segment_lite.track("u", "From the module")
    queue = segment_lite.default_client.queue  # type: ignore[union-attr]
    assert isinstance(queue, DiskSpool)
    assert queue.max_bytes == 1 << 20 and queue.fsync == "always"
    assert segment_lite.flush(timeout=10)
    assert len(collector.message_ids()) == 1


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"spool_fsync": "sometimes"}, "spool_fsync"),
        ({"spool_max_bytes": 100}, "spool_max_bytes"),
        ({"spool_max_bytes": "1GB"}, "spool_max_bytes"),
    ],
)
def test_bad_spool_options_name_the_option(spool_dir: Path, options: dict, field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        segment_lite.Client(WRITE_KEY, spool_dir=spool_dir, **options)
    assert raised.value.path == field
    assert field in str(raised.value)


def test_an_unusable_spool_dir_is_a_clear_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(SpoolError, match="file"):
        segment_lite.Client(WRITE_KEY, spool_dir=not_a_dir)
    with pytest.raises(SpoolError, match="cannot be created"):
        segment_lite.Client(WRITE_KEY, spool_dir=not_a_dir / "below")


def test_send_false_needs_no_spool(spool_dir: Path) -> None:
    client = segment_lite.Client(WRITE_KEY, send=False, spool_dir=spool_dir)
    assert isinstance(client.queue, MemoryQueue)
    assert not spool_dir.exists()


def test_with_a_spool_an_outage_is_not_cut_short_by_the_retry_count(spool_dir: Path) -> None:
    client = segment_lite.Client(WRITE_KEY, spool_dir=spool_dir)
    assert client.retry_policy.max_retries == SPOOL_MAX_RETRIES
    assert client.retry_policy.max_total_backoff_s == 43200
    client.shutdown(timeout=1)
    chosen = segment_lite.Client(WRITE_KEY, spool_dir=spool_dir, max_retries=3)
    assert chosen.retry_policy.max_retries == 3, "a retry count that was chosen is kept"
    chosen.shutdown(timeout=1)


def test_a_full_spool_refuses_and_says_which_limit(collector: Collector, spool_dir: Path) -> None:
    collector.go_down()
    errors: list[BaseException] = []
    client = segment_lite.Client(
        WRITE_KEY,
        host=collector.url,
        spool_dir=spool_dir,
        spool_max_bytes=64 * 1024,
        max_queue_size=1,  # the memory queue's limits do not apply to a spool
        on_drop=lambda reason, exc, messages: errors.append(exc),
    )
    results = [client.track("u", "Big", {"pad": "x" * 1_000})[0] for _ in range(100)]
    accepted = sum(results)
    assert 50 <= accepted < 70, accepted
    stats = client.stats()
    assert stats["dropped"]["queue_full"] == 100 - accepted
    assert isinstance(errors[0], QueueFullError) and "spool_max_bytes=65536" in str(errors[0])
    assert not client.shutdown(timeout=0.2)
    assert client.stats()["left_in_spool"] == accepted


def test_stats_account_for_every_message_across_processes(collector: Collector, spool_dir: Path) -> None:
    collector.go_down()
    first = segment_lite.Client(WRITE_KEY, host=collector.url, spool_dir=spool_dir)
    for i in range(120):
        first.track("u", "Counted", {"i": i})
    first.shutdown(timeout=0.3)
    one = first.stats()
    assert one["accepted"] == 120 and one["left_in_spool"] == 120 and one["delivered"] == 0

    collector.go_up()
    collector.fail_next(1, status=422)  # the first batch is rejected for good (a 400 would be bisected)
    second = segment_lite.Client(WRITE_KEY, host=collector.url, spool_dir=spool_dir, upload_size=20)
    for i in range(30):
        second.track("u", "New", {"i": i})
    assert second.shutdown(timeout=30)
    two = second.stats()
    assert two["recovered"] == 120 and two["accepted"] == 30
    assert two["dropped"]["rejected"] > 0
    assert two["accepted"] + two["recovered"] == (
        two["delivered"] + two["dropped"]["rejected"] + two["left_in_spool"]
    )
    assert two["left_in_spool"] == 0
