"""Kill -9, SIGTERM and plain exit with a spool: the next process with the same spool_dir delivers."""

from __future__ import annotations

import datetime
import json
import os
import signal
import time
from pathlib import Path

import pytest
from spool_helpers import WRITE_KEY, kill9, owner_names, spooling_child, wait_until

import segment_lite
from segment_lite.collector import Collector, Faults


def _epoch(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _next_process(collector: Collector, spool_dir: Path, **options: object) -> segment_lite.Client:
    return segment_lite.Client(WRITE_KEY, host=collector.url, spool_dir=spool_dir, **options)


def test_sigkill_with_the_server_down_next_process_delivers_all_5000(
    tmp_path: Path, collector: Collector, spool_dir: Path
) -> None:
    collector.go_down()
    with spooling_child(tmp_path, collector.url, spool_dir, 5_000) as (child, owner, ids):
        kill9(child)
    killed_at = time.time()
    assert owner_names(spool_dir) == [os.path.basename(owner)]
    collector.go_up()

    client = _next_process(collector, spool_dir)
    assert client.stats()["recovered"] == 5_000
    assert client.flush(timeout=60)
    delivered = collector.messages()
    assert sorted(m["messageId"] for m in delivered) == sorted(ids), "each message keeps its messageId"
    assert collector.stats.duplicates == 0
    sent_at = {m["sentAt"] for m in delivered}
    assert all(_epoch(s) >= killed_at - 1 for s in sent_at), (
        "sentAt is stamped when the batch is sent, not when the message was spooled"
    )
    stats = client.stats()
    assert stats["accepted"] == 0 and stats["delivered"] == 5_000 and stats["dropped_total"] == 0
    assert client.shutdown(timeout=10)
    assert owner_names(spool_dir) == [], "delivered directories are deleted"


def test_sigkill_mid_delivery_of_20000_next_process_delivers_the_rest(
    tmp_path: Path, spool_dir: Path
) -> None:
    batch = 500
    # Each answer takes 20 ms, so the kill lands while batches are being delivered.
    with Collector(faults=Faults(delay_s=0.02)) as collector:
        options = {"upload_size": batch, "max_batch_size": batch, "upload_interval": 0.05}
        with spooling_child(tmp_path, collector.url, spool_dir, 20_000, then="flush", **options) as (
            child,
            _,
            ids,
        ):
            assert wait_until(lambda: len(collector.message_ids()) >= 4_000, timeout=60)
            kill9(child)
        delivered_before = len(collector.message_ids())
        assert delivered_before < 20_000, "the kill came too late to test anything"

        client = _next_process(collector, spool_dir, upload_size=batch, max_batch_size=batch)
        recovered = client.stats()["recovered"]
        assert client.flush(timeout=60)
        assert collector.message_ids() == set(ids)
        duplicates = collector.stats.duplicates
        # One sender thread: at most the batch in flight at the kill is sent twice.
        assert duplicates <= batch, duplicates
        assert recovered <= 20_000 - delivered_before + batch
        assert client.shutdown(timeout=10)


def test_sigterm_keeps_what_was_accepted(tmp_path: Path, collector: Collector, spool_dir: Path) -> None:
    collector.go_down()
    with spooling_child(tmp_path, collector.url, spool_dir, 1_000) as (child, _, ids):
        os.kill(child.pid, signal.SIGTERM)  # Python's default: die at once, no exit handlers
        child.wait(timeout=30)
    collector.go_up()
    client = _next_process(collector, spool_dir)
    assert client.flush(timeout=60)
    assert collector.message_ids() == set(ids)
    client.shutdown(timeout=10)


def test_exit_with_the_server_down_leaves_the_rest_for_the_next_process(
    tmp_path: Path, collector: Collector, spool_dir: Path
) -> None:
    collector.go_down()
    with spooling_child(tmp_path, collector.url, spool_dir, 1_000, then="exit", shutdown_timeout=0.5) as (
        child,
        _,
        ids,
    ):
        assert child.wait(timeout=30) == 0
    assert len(owner_names(spool_dir)) == 1, "the undelivered messages stay on disk"
    collector.go_up()
    client = _next_process(collector, spool_dir)
    assert client.stats()["recovered"] == 1_000
    assert client.flush(timeout=60)
    assert collector.message_ids() == set(ids)
    assert collector.stats.duplicates == 0
    client.shutdown(timeout=10)


def test_acknowledged_messages_are_never_sent_again(
    tmp_path: Path, collector: Collector, spool_dir: Path
) -> None:
    with spooling_child(tmp_path, collector.url, spool_dir, 1_000, then="flush") as (child, _, ids):
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith("flushed"), line
        assert json.loads(line.split(" ", 1)[1])["delivered"] == 1_000
        kill9(child)
    requests = collector.stats.requests
    client = _next_process(collector, spool_dir)
    assert client.stats()["recovered"] == 0
    assert client.flush(timeout=10)
    assert collector.stats.requests == requests, "nothing was sent again"
    assert collector.message_ids() == set(ids)
    client.shutdown(timeout=10)
    assert owner_names(spool_dir) == []


def test_shutdown_timeout_keeps_undelivered_messages_and_counts_them(
    collector: Collector, spool_dir: Path
) -> None:
    collector.go_down()
    errors: list[BaseException] = []
    client = _next_process(
        collector,
        spool_dir,
        on_error=lambda exc, messages: errors.append(exc),
        on_drop=lambda reason, exc, messages: errors.append(exc),
    )
    for i in range(300):
        assert client.track("u", "Kept", {"i": i})[0]
    assert not client.shutdown(timeout=0.5)
    stats = client.stats()
    assert stats["left_in_spool"] == 300
    assert stats["dropped_total"] == 0 and errors == [], "kept on disk is not a loss"
    assert stats["accepted"] + stats["recovered"] == stats["delivered"] + stats["left_in_spool"]

    collector.go_up()
    successor = _next_process(collector, spool_dir)
    assert successor.stats()["recovered"] == 300
    assert successor.flush(timeout=30)
    assert len(collector.message_ids()) == 300
    successor.shutdown(timeout=10)


@pytest.mark.parametrize("fsync", ["batch", "always", "never"])
def test_every_fsync_policy_survives_a_kill(
    tmp_path: Path, collector: Collector, spool_dir: Path, fsync: str
) -> None:
    collector.go_down()
    with spooling_child(tmp_path, collector.url, spool_dir, 300, spool_fsync=fsync) as (child, _, ids):
        kill9(child)
    collector.go_up()
    client = _next_process(collector, spool_dir)
    assert client.flush(timeout=30)
    assert collector.message_ids() == set(ids)
    client.shutdown(timeout=10)
