"""No silent loss, no unbounded wait: bounded shutdown, poison isolation, loud failures, fast recovery.

Every test that injects a fault checks the books: once settled, each accepted message
is delivered or counted as dropped with its reason, and nothing is counted twice.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

import segment_lite
from segment_lite import APIError, RetriesExhaustedError, ShutdownError
from segment_lite.collector import Collector
from segment_lite.health import REMINDER_INTERVAL_S, DeliveryHealth
from segment_lite.pipeline import Worker
from segment_lite.retry import RetryPolicy
from segment_lite.testing import FakeClock
from segment_lite.transport import (
    ConnectionClosed,
    RequestsTransport,
    TransportResponse,
    Urllib3Transport,
)
from tests.conftest import WRITE_KEY
from tests.transport_servers import CannedServer, SilentServer

#: Every test that makes clients runs on both delivery drivers (see tests/conftest.py).
DELIVERY_DRIVERS = ("threads", "asyncio")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: An upload interval no test outlives: what is tracked goes out at flush().
ONLY_FLUSH_SENDS = 3600
#: What a bounded call may take beyond its timeout (aborting, counting, stopping threads).
MARGIN_S = 0.75
ACCEPTED_DROPS = ("rejected", "retries_exhausted", "shutdown_timeout")


def no_jitter(delay: float) -> float:
    return delay


def books_balance(client: segment_lite.Client) -> dict[str, Any]:
    """Assert every accepted message is delivered, dropped with a reason, or still queued."""
    stats = client.stats()
    dropped = sum(stats["dropped"][reason] for reason in ACCEPTED_DROPS)
    assert stats["delivered"] + dropped + stats["queued"] == stats["accepted"], stats
    return stats


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.stop()


@pytest.fixture
def no_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker threads cannot start (as in an atexit handler on Python 3.12+): delivery is inline."""

    def refuse(self: Worker) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(Worker, "start", refuse)


def reported(errors: list[tuple[BaseException, list[dict[str, Any]]]]) -> list[str]:
    """The messageIds reported to on_error, in order (duplicates kept, to catch double reports)."""
    return [message["messageId"] for _, messages in errors for message in messages]


# -- 1. flush, shutdown and exit are bounded, and abort what is in flight ------------------------


@pytest.mark.parametrize("kind", [Urllib3Transport, RequestsTransport])
def test_shutdown_is_bounded_aborts_the_request_and_counts_the_batch_in_flight(silent, kind) -> None:
    errors: list[tuple[BaseException, list[dict[str, Any]]]] = []
    client = segment_lite.Client(
        WRITE_KEY,
        host=silent.url,
        timeout=30,  # the server would hold the request far longer than the shutdown allows
        upload_size=50,
        upload_interval=ONLY_FLUSH_SENDS,
        transport=kind,
        on_drop=lambda reason, exc, msgs: errors.append((exc, msgs)),
    )
    ids = [client.track("u", "Held", {"i": i})[1]["messageId"] for i in range(150)]
    client.flush(timeout=0)  # wake the worker: a batch goes out and hangs
    assert silent.received.wait(5)
    started = time.monotonic()
    assert client.shutdown(timeout=1.0) is False
    elapsed = time.monotonic() - started
    print(f"shutdown(timeout=1.0) returned after {elapsed:.3f}s")
    assert elapsed < 1.0 + MARGIN_S
    assert silent.hung_up.wait(1), "the request in flight was aborted: its connection closed"
    stats = books_balance(client)
    assert stats["dropped"]["shutdown_timeout"] == 150 and stats["delivered"] == 0
    assert sorted(reported(errors)) == sorted(ids), "every message reported once, in flight or queued"
    assert all(isinstance(exc, ShutdownError) for exc, _ in errors)
    assert all(not worker.is_alive() for worker in threading.enumerate() if isinstance(worker, Worker))


def test_flush_is_bounded_without_threads_and_keeps_what_it_could_not_send(silent, no_threads) -> None:
    client = segment_lite.Client(WRITE_KEY, host=silent.url, timeout=30, shutdown_timeout=None)
    for i in range(3):
        client.track("u", "Inline", {"i": i})
    started = time.monotonic()
    assert client.flush(timeout=0.5) is False
    assert time.monotonic() - started < 0.5 + MARGIN_S  # the request is cut at the deadline
    stats = client.stats()
    assert stats["dropped_total"] == 0, "a flush that timed out drops nothing"
    assert client._pipeline.pending() == 3
    started = time.monotonic()
    assert client.shutdown(timeout=0.3) is False
    assert time.monotonic() - started < 0.3 + MARGIN_S
    stats = books_balance(client)
    assert stats["dropped"]["shutdown_timeout"] == 3


def test_inline_flush_keeps_a_batch_a_503_delayed_past_its_deadline(collector, no_threads) -> None:
    # Was: dropped after one 503 within flush(0.2), and flush() returned True.
    client = segment_lite.Client(
        WRITE_KEY, host=collector.url, retry_policy=RetryPolicy(base_delay_s=1.0, jitter=no_jitter)
    )
    collector.fail_next(1, 503)
    _, message = client.track("u", "Inline Retry")
    assert client.flush(timeout=0.2) is False
    assert client.stats()["dropped_total"] == 0
    assert client.flush(timeout=10) is True
    assert collector.message_ids() == {message["messageId"]}
    assert books_balance(client)["delivered"] == 1
    client.shutdown(timeout=2)


def run_script(source: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


EXIT_SCRIPT = """
    import atexit, json, sys, time

    def report():  # registered before segment_lite's exit handler, so it runs after it
        print(json.dumps({"exit_s": time.monotonic() - ended, "stats": client.stats()}))

    atexit.register(report)
    import segment_lite
    client = segment_lite.Client("exit-key", host=sys.argv[1], timeout=30, shutdown_timeout=1.0,
                                 upload_size=10, upload_interval=3600)
    for i in range(40):
        client.track("u", "At Exit", {"i": i})
    client.flush(timeout=float(sys.argv[2]))  # let the failures begin
    ended = time.monotonic()
"""


def test_exit_is_bounded_when_the_server_never_answers(silent) -> None:
    result = run_script(EXIT_SCRIPT, silent.url, "0.2")
    assert result.returncode == 0, result.stderr
    report = __import__("json").loads(result.stdout.strip().splitlines()[-1])
    print(f"exit handler took {report['exit_s']:.3f}s with shutdown_timeout=1.0")
    assert report["exit_s"] < 1.0 + MARGIN_S
    stats = report["stats"]
    assert stats["dropped"]["shutdown_timeout"] == 40 and stats["queued"] == 0
    assert "dropped 40 undelivered message(s)" in result.stderr


def test_exit_drops_name_the_last_error(collector) -> None:
    port = collector.port
    collector.go_down()
    result = run_script(EXIT_SCRIPT, collector.url, "0.3")
    assert result.returncode == 0, result.stderr
    report = __import__("json").loads(result.stdout.strip().splitlines()[-1])
    assert report["exit_s"] < 1.0 + MARGIN_S
    assert report["stats"]["dropped"]["shutdown_timeout"] == 40
    cause = f"connection refused to 127.0.0.1:{port}"
    exit_lines = [line for line in result.stderr.splitlines() if "exit:" in line]
    assert exit_lines and cause in exit_lines[-1], result.stderr
    assert f"(shutdown_timeout): shutdown deadline (1.0s) passed before delivery; last error: {cause}" in (
        result.stderr
    )


# -- 2. a poison message is isolated; the rest of its batch is delivered ---------------------------


def poison_hook(message: dict[str, Any]) -> dict[str, Any]:
    """Make the messages marked ``poison`` invalid for the server: no userId, no anonymousId."""
    if message.get("properties", {}).get("poison"):
        message = {key: value for key, value in message.items() if key not in ("userId", "anonymousId")}
    return message


def track_batch(client: segment_lite.Client, n: int, poison_at: set[int]) -> tuple[set[str], set[str]]:
    good, bad = set(), set()
    for i in range(n):
        _, message = client.track("u", "Bisected", {"i": i, "poison": i in poison_at})
        (bad if i in poison_at else good).add(message["messageId"])
    return good, bad


@pytest.mark.parametrize(("n", "poison_at"), [(64, {37}), (100, {3, 71}), (2, {0})])
def test_messages_refused_with_400_are_isolated_and_the_rest_delivered(
    collector, make_client, n, poison_at
) -> None:
    errors: list[tuple[BaseException, list[dict[str, Any]]]] = []
    client = make_client(
        before_send=poison_hook,
        upload_size=n,
        max_batch_size=n,
        upload_interval=ONLY_FLUSH_SENDS,
        on_error=lambda exc, msgs: errors.append((exc, msgs)),
    )
    good, bad = track_batch(client, n, poison_at)
    assert client.flush(timeout=10)
    assert collector.message_ids() == good
    stats = books_balance(client)
    assert stats["delivered"] == n - len(poison_at)
    assert stats["dropped"]["rejected"] == len(poison_at) and stats["rejected_by_status"] == {
        400: len(poison_at)
    }
    assert sorted(reported(errors)) == sorted(bad)
    for exc, _ in errors:
        assert isinstance(exc, APIError) and exc.status == 400
        assert "batch[0]" in exc.message  # the server's own message, for the message alone
        assert exc.host == f"127.0.0.1:{collector.port}"
    bound = 1 + len(poison_at) * 2 * math.ceil(math.log2(n))
    print(f"{len(poison_at)} bad message(s) in {n}: {len(collector.requests)} requests (bound {bound})")
    assert len(collector.requests) <= bound


def test_a_message_that_makes_the_server_hang_up_is_isolated(collector, make_client, driver) -> None:
    errors: list[tuple[BaseException, list[dict[str, Any]]]] = []
    clock = FakeClock()
    client = make_client(
        clock=clock,
        upload_size=32,
        upload_interval=ONLY_FLUSH_SENDS,
        on_error=lambda exc, msgs: errors.append((exc, msgs)),
    )
    collector.reset_when("poison-pill")
    ids = [
        client.track("u", "Bisected", {"i": i, "tag": "poison-pill" if i == 20 else "fine"})[1]
        for i in range(32)
    ]
    assert client.flush(timeout=10)
    poison = ids[20]["messageId"]
    assert collector.message_ids() == {m["messageId"] for m in ids} - {poison}
    stats = books_balance(client)
    assert stats["delivered"] == 31 and stats["dropped"]["rejected"] == 1
    [(exc, messages)] = errors
    assert [m["messageId"] for m in messages] == [poison]
    assert isinstance(exc, ConnectionClosed)
    hang_ups = [f"connection reset by 127.0.0.1:{collector.port} before it answered, each time"]
    if driver == "asyncio":
        # asyncio's streams may see the reset as an end of stream (seen on Python 3.9): the same
        # hang-up, told by httpx as a connection closed before a complete answer.
        hang_ups.append(
            f"127.0.0.1:{collector.port} closed the connection without a (complete) response, each time"
        )
    assert str(exc).startswith(tuple(hang_ups))
    print(f"1 hang-up message in 32: {len(collector.requests)} requests")
    assert len(collector.requests) <= 1 + 3 * math.ceil(math.log2(32)) + 2


def test_connections_closed_by_the_network_never_drop_messages(collector, make_client) -> None:
    # Closes without any proof that the server answers others are not blamed on a message.
    clock = FakeClock()
    client = make_client(clock=clock, upload_size=10, upload_interval=ONLY_FLUSH_SENDS)
    collector.reset_next(6)
    ids = {client.track("u", "Flaky", {"i": i})[1]["messageId"] for i in range(10)}
    assert client.flush(timeout=10)
    assert collector.message_ids() == ids
    stats = books_balance(client)
    assert stats["delivered"] == 10 and stats["dropped_total"] == 0


def test_an_unexpected_error_drops_only_what_is_unsettled(collector, make_client) -> None:
    # Was: the catch-all dropped the whole batch, the half already delivered included (counted twice).
    posts = []

    class BreaksOnThirdPost:
        def __init__(self) -> None:
            self.inner = Urllib3Transport()

        def post(
            self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
        ) -> TransportResponse:
            posts.append(len(body))
            if len(posts) == 3:
                raise RuntimeError("a bug in a custom transport")
            return self.inner.post(url, body, headers, timeout)

        def abort(self) -> None:
            self.inner.abort()

        def close(self) -> None:
            self.inner.close()

    client = make_client(transport=BreaksOnThirdPost, upload_size=8, upload_interval=ONLY_FLUSH_SENDS)
    collector.fail_next(1, 413)  # 8 refused as too large: 4 delivered, then the bug
    for i in range(8):
        client.track("u", "Split", {"i": i})
    assert client.flush(timeout=10)
    stats = books_balance(client)
    assert stats["delivered"] == 4 and stats["dropped"]["retries_exhausted"] == 4


# -- 4. loud failures --------------------------------------------------------------------------------


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "segment"]


def test_an_outage_is_one_warning_naming_the_cause_then_a_summary(collector, make_client, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="segment")
    port = collector.port
    client = make_client(retry_policy=RetryPolicy(max_retries=1000, base_delay_s=0.01, max_delay_s=0.05))
    collector.go_down()
    client.track("u", "Outage")
    client.flush(timeout=0)
    assert wait_for(lambda: client.stats()["retried"] >= 5)
    failing = [w for w in warnings_of(caplog) if w.startswith("delivery failing")]
    assert failing == [
        f"delivery failing: connection refused to 127.0.0.1:{port}; retrying with backoff "
        "(further failures are summarised)"
    ]
    collector.go_up()
    assert client.flush(timeout=10)
    [recovered] = [w for w in warnings_of(caplog) if w.startswith("delivery recovered")]
    assert f"last error: connection refused to 127.0.0.1:{port}" in recovered
    assert len([w for w in warnings_of(caplog) if "delivery" in w]) == 2
    books_balance(client)


def test_a_wrong_write_key_warns_names_the_host_and_the_flush_says_so(caplog) -> None:
    with Collector(write_keys={"the-right-key"}) as collector:
        client = segment_lite.Client("a-wrong-key", host=collector.url, upload_interval=ONLY_FLUSH_SENDS)
        for i in range(5):
            client.track("u", "Unauthorized", {"i": i})
        with caplog.at_level(logging.WARNING, logger="segment"):
            assert client.flush(timeout=10) is True  # settled, as documented...
        host = f"127.0.0.1:{collector.port}"
        result = client.last_flush
        assert result is not None and not result.all_delivered  # ...and the outcome is visible
        assert (result.settled, result.delivered, result.dropped) == (True, 0, {"rejected": 5})
        assert result.last_error == f"[{host}] unauthorized: unknown write key (401)"
        warned = warnings_of(caplog)
        assert f"delivery failing: 401 unknown write key from {host}; retrying with backoff" in warned[0]
        assert any(w.startswith("flush settled with 5 rejected dropped and 0 delivered") for w in warned)
        assert not any("[Segment]" in r.getMessage() for r in caplog.records)
        books_balance(client)
        client.shutdown(timeout=2)


def test_a_clean_flush_reports_what_it_delivered(collector, make_client, caplog) -> None:
    client = make_client(upload_interval=ONLY_FLUSH_SENDS)
    for i in range(7):
        client.track("u", "Fine", {"i": i})
    with caplog.at_level(logging.WARNING, logger="segment"):
        assert client.flush(timeout=10)
    assert client.last_flush is not None and client.last_flush.all_delivered
    assert (client.last_flush.delivered, client.last_flush.dropped, client.last_flush.pending) == (7, {}, 0)
    assert warnings_of(caplog) == []


def test_warnings_are_rate_limited_while_an_outage_lasts() -> None:
    clock = FakeClock()
    log = logging.getLogger("segment_lite.test_health")
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                records.append(record.getMessage())

    handler = Collect()
    log.addHandler(handler)
    log.setLevel(logging.WARNING)  # whatever levels other tests left on its parents
    try:
        health = DeliveryHealth(log, clock)
        for _ in range(100):
            health.failed("connection refused to 127.0.0.1:1")
            clock.advance(0.5)  # 50 s of failures: one warning
        assert len(records) == 1
        clock.advance(REMINDER_INTERVAL_S)
        health.failed("503 busy from 127.0.0.1:1")
        assert (
            records[-1]
            == "delivery still failing after 101 attempt(s) over 110s; last error: 503 busy from 127.0.0.1:1"
        )
        health.succeeded()
        health.succeeded()
        assert records[-1].startswith("delivery recovered after 101 failed attempt(s) over 110.0s")
        assert len(records) == 3 and health.last_error == "503 busy from 127.0.0.1:1"
    finally:
        log.removeHandler(handler)


# -- 5. backoff: fast through a burst, capped through an outage -----------------------------------


def test_a_burst_of_five_5xx_is_delivered_in_under_3s(collector, make_client) -> None:
    client = make_client(upload_interval=ONLY_FLUSH_SENDS)  # the default retry policy, real waits
    collector.fail_next(5, 503)
    ids = {client.track("u", "Burst", {"i": i})[1]["messageId"] for i in range(20)}
    started = time.monotonic()
    assert client.flush(timeout=10)
    elapsed = time.monotonic() - started
    print(f"recovered from five consecutive 503s in {elapsed:.3f}s")
    assert elapsed < 3.0
    assert collector.message_ids() == ids and len(collector.requests) == 6


def test_a_sustained_outage_backs_off_to_the_cap_within_the_budget(collector, make_client) -> None:
    clock = FakeClock()
    client = make_client(clock=clock, max_retries=1000, max_total_backoff_duration=900)
    collector.fail_next(10_000, 503)
    client.track("u", "Outage")
    assert client.flush(timeout=30)
    waits = clock.waits
    assert waits[0] <= 0.015 and max(waits) <= 60.0
    assert max(waits[-10:]) > 30, "late waits are drawn below the 60 s cap, not below the first steps"
    assert sum(waits) == pytest.approx(900), "retried until the budget, and not past it"
    assert books_balance(client)["dropped"]["retries_exhausted"] == 1


def test_exhausted_retries_say_how_long_and_why(collector, make_client) -> None:
    clock = FakeClock()
    errors: list[BaseException] = []
    client = make_client(clock=clock, max_retries=3, on_error=lambda exc, msgs: errors.append(exc))
    collector.go_down()
    client.track("u", "Doomed")
    assert client.flush(timeout=10)
    [exc] = errors
    assert isinstance(exc, RetriesExhaustedError) and exc.attempts == 4
    assert exc.last_error == f"connection refused to 127.0.0.1:{collector.port}"
    assert str(exc).startswith("gave up after 4 attempts over ")


def test_a_cut_off_answer_is_not_counted_as_delivered() -> None:
    server = CannedServer(b"HTTP/1.1 200 OK\r\n")
    clock = FakeClock()
    try:
        client = segment_lite.Client(WRITE_KEY, host=server.url, max_retries=2, clock=clock)
        assert client.track("u", "Cut Off")[0] and client.flush(timeout=10)
        stats = books_balance(client)
        assert stats["delivered"] == 0 and stats["dropped"]["retries_exhausted"] == 1
    finally:
        server.stop()


def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return bool(predicate())
