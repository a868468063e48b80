"""Hostile and unlucky use of the client: shutdown with blocked producers, raising objects, timestamp
strings, and credentials echoed back by a server (issue 22, defects 9 to 12).

Each test checks the books: every call is either accepted (and then delivered or
counted as dropped with a reason) or refused and counted.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import segment_lite
from tests.conftest import WRITE_KEY
from tests.transport_servers import SilentServer

ACCEPTED_DROPS = ("rejected", "retries_exhausted", "shutdown_timeout")
#: An upload interval no test outlives: what is tracked goes out when a batch fills or at flush().
ONLY_FLUSH_SENDS = 3600


def books_balance(client: segment_lite.Client) -> dict[str, Any]:
    """Assert every accepted message is delivered or dropped with a reason, and none is left queued."""
    stats = client.stats()
    dropped = sum(stats["dropped"][reason] for reason in ACCEPTED_DROPS)
    assert stats["queued"] == 0, stats
    assert stats["delivered"] + dropped == stats["accepted"], stats
    return stats


def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


# -- 9. producers blocked for room while shutdown gives up -----------------------------------------


def test_producers_blocked_when_shutdown_gives_up_are_refused_and_counted() -> None:
    silent = SilentServer()
    try:
        client = segment_lite.Client(
            WRITE_KEY,
            host=silent.url,
            timeout=30,
            max_queue_size=10,
            upload_size=10,
            max_batch_size=10,
            upload_interval=ONLY_FLUSH_SENDS,
            on_full="block",
        )
        results: list[bool] = []
        lock = threading.Lock()

        def produce() -> None:
            accepted, _ = client.track("u", "Blocked")
            with lock:
                results.append(accepted)

        threads = [threading.Thread(target=produce) for _ in range(25)]
        for thread in threads:
            thread.start()
        # 10 in flight to a server that never answers, 10 queued, 5 blocked for room.
        assert silent.received.wait(5)
        wait_for(lambda: len(results) == 20 and client.queue.qsize() == 10)
        assert client.shutdown(timeout=0.3) is False
        for thread in threads:
            thread.join(5)
        assert not any(thread.is_alive() for thread in threads), "a producer is still blocked"
        assert sorted(results) == [False] * 5 + [True] * 20
        stats = books_balance(client)
        assert stats["accepted"] == 20
        assert stats["dropped"]["shutdown_timeout"] == 20
        assert stats["dropped"]["after_shutdown"] == 5
        # And every later call is refused and counted too.
        assert client.track("u", "Later")[0] is False
        assert client.stats()["dropped"]["after_shutdown"] == 6
    finally:
        silent.stop()


def _track_until_refused(client: segment_lite.Client, outcomes: list[bool], lock: threading.Lock) -> None:
    while True:
        accepted, _ = client.track("u", "Busy")
        with lock:
            outcomes.append(accepted)
        if not accepted:
            return


def test_eight_threads_tracking_through_a_shutdown_that_gives_up_lose_nothing_uncounted() -> None:
    silent = SilentServer()
    try:
        client = segment_lite.Client(
            WRITE_KEY, host=silent.url, timeout=30, max_queue_size=50, upload_size=20, on_full="block"
        )
        outcomes: list[bool] = []
        lock = threading.Lock()
        threads = [
            threading.Thread(target=_track_until_refused, args=(client, outcomes, lock)) for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        assert silent.received.wait(5)
        wait_for(lambda: client.queue.full())
        assert client.shutdown(timeout=1.0) is False
        for thread in threads:
            thread.join(5)
        assert not any(thread.is_alive() for thread in threads), "a producer is still blocked"
        stats = books_balance(client)
        assert outcomes.count(True) == stats["accepted"]
        assert outcomes.count(False) == 8 == stats["dropped"]["after_shutdown"]
        assert stats["dropped"]["shutdown_timeout"] == stats["accepted"] > 0
    finally:
        silent.stop()


def test_producers_let_in_during_a_clean_shutdown_are_delivered(make_client, collector) -> None:
    client = make_client(max_queue_size=20, upload_size=10, on_full="block")
    outcomes: list[bool] = []
    lock = threading.Lock()
    threads = [threading.Thread(target=_track_until_refused, args=(client, outcomes, lock)) for _ in range(8)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(outcomes) > 200)
    assert client.shutdown(timeout=10) is True
    for thread in threads:
        thread.join(5)
    assert not any(thread.is_alive() for thread in threads)
    stats = books_balance(client)
    assert stats["delivered"] == stats["accepted"] == outcomes.count(True)
    assert stats["dropped"]["after_shutdown"] == outcomes.count(False) == 8
    assert len(collector.messages()) == stats["delivered"]
