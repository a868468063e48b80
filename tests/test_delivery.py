"""Delivery guarantees under faults, on a real local server: each accepted message arrives exactly once."""

from __future__ import annotations

import datetime
import email.utils
import itertools
import json
import logging
import threading
import time

import pytest

from segment_lite import APIError, QueueFullError, RetriesExhaustedError, ShutdownError, ValidationError
from segment_lite.retry import RetryPolicy
from segment_lite.testing import FakeClock
from tests.conftest import WRITE_KEY

#: Every test that makes clients runs on both delivery drivers (see tests/conftest.py).
DELIVERY_DRIVERS = ("threads", "asyncio")

#: An upload interval no test outlives: what is tracked goes out in one request, at flush().
ONLY_FLUSH_SENDS = 3600


def no_jitter(delay: float) -> float:
    return delay


def fast_policy(**kwargs) -> RetryPolicy:
    """Real waits, but short ones: for faults that need wall time to pass (server down, timeouts)."""
    kwargs.setdefault("base_delay_s", 0.02)
    kwargs.setdefault("max_delay_s", 0.2)
    kwargs.setdefault("jitter", no_jitter)
    return RetryPolicy(**kwargs)


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def send_and_check(client, collector, n: int = 10) -> float:
    """Track ``n`` messages, flush, assert each arrived exactly once; returns recovery seconds."""
    ids = set()
    started = time.monotonic()
    for i in range(n):
        ok, message = client.track("user", "Fault Test", {"i": i})
        assert ok
        ids.add(message["messageId"])
    assert client.flush(timeout=30)
    elapsed = time.monotonic() - started
    clock = client.clock
    simulated = f", plus {sum(clock.waits):.1f}s of simulated waits" if isinstance(clock, FakeClock) else ""
    print(f"{n} messages delivered exactly once; recovery took {elapsed:.3f}s{simulated}")
    assert collector.message_ids() == ids
    stats = client.stats()
    assert stats["delivered"] == n and stats["dropped_total"] == 0
    return elapsed


def test_retries_503_with_exponential_backoff_and_fresh_sent_at(collector, make_client) -> None:
    clock = FakeClock()
    client = make_client(
        clock=clock, retry_policy=RetryPolicy(jitter=no_jitter), upload_interval=ONLY_FLUSH_SENDS
    )
    collector.fail_next(3, 503)
    send_and_check(client, collector)
    assert clock.waits == pytest.approx([0.015, 0.045, 0.135])
    attempts = collector.requests
    assert [r.status for r in attempts] == [503, 503, 503, 200]
    assert [r.headers.get("X-Retry-Count") for r in attempts] == [None, "1", "2", "3"]
    sent_at = [
        datetime.datetime.fromisoformat(r.json["sentAt"].replace("Z", "+00:00")).timestamp() for r in attempts
    ]
    gaps = [round(b - a, 3) for a, b in zip(sent_at, sent_at[1:])]
    # Each attempt is stamped afresh, after its wait.
    assert gaps == pytest.approx([0.015, 0.045, 0.135], abs=0.0011)
    assert client.stats()["retried"] == 3


STEPS = [0.015, 0.045, 0.135, 0.405, 1.215, 3.645, 10.935, 32.805, 60, 60, 60, 60]


def test_backoff_steps_start_in_tens_of_ms_and_are_capped_at_60s() -> None:
    delays = RetryPolicy(jitter=no_jitter).delays()
    assert [round(next(delays), 6) for _ in range(12)] == STEPS


def test_default_jitter_is_full_jitter_below_each_step() -> None:
    runs = [list(itertools.islice(RetryPolicy().delays(), 12)) for _ in range(200)]
    for run in runs:
        for got, step in zip(run, STEPS):
            assert 0 <= got <= step
    # Spread over the whole step, not stretched above it: clients that failed together retry apart.
    firsts = [run[0] for run in runs]
    assert min(firsts) < 0.003 and max(firsts) > 0.012
    # Five consecutive failures never cost more than 1.9 s of waiting (3 s with the requests).
    assert max(sum(run[:5]) for run in runs) < 1.9


@pytest.mark.parametrize("status", [408, 410, 429, 460, 500, 502, 503, 504, 511, 599])
def test_retryable_statuses_recover(collector, make_client, status) -> None:
    clock = FakeClock()
    client = make_client(clock=clock)
    collector.fail_next(2, status)
    send_and_check(client, collector, n=3)
    assert len(clock.waits) == 2


@pytest.mark.parametrize("status", [401, 403, 404, 422, 501, 505])
def test_non_retryable_statuses_are_rejected_and_reported(collector, make_client, status) -> None:
    errors = []
    clock = FakeClock()
    client = make_client(
        clock=clock, on_error=lambda exc, msgs: errors.append((exc, msgs)), upload_interval=ONLY_FLUSH_SENDS
    )
    collector.fail_next(1, status, body={"code": "bad_thing", "message": "it was bad"})
    ids = {client.track("u", "Rejected", {"i": i})[1]["messageId"] for i in range(3)}
    assert client.flush(timeout=10)
    assert len(collector.requests) == 1 and clock.waits == []
    [(exc, messages)] = errors
    assert isinstance(exc, APIError)
    assert (exc.status, exc.code, exc.message) == (status, "bad_thing", "it was bad")
    assert {m["messageId"] for m in messages} == ids
    stats = client.stats()
    assert stats["dropped"]["rejected"] == 3 and stats["rejected_by_status"] == {status: 3}
    assert stats["delivered"] == 0


def test_413_splits_the_batch_down_to_what_fits(collector, make_client) -> None:
    client = make_client(upload_interval=ONLY_FLUSH_SENDS)
    collector.fail_next(2, 413)
    send_and_check(client, collector, n=8)
    sizes = [len(r.json["batch"]) for r in collector.requests]
    assert sizes == [8, 4, 2, 2, 4]  # 8 refused, first 4 refused, its halves and the other 4 sent


def test_413_on_a_single_message_rejects_it(collector, make_client) -> None:
    client = make_client()
    collector.fail_next(1, 413)
    ok, _ = client.track("u", "Alone")
    assert ok and client.flush(timeout=10)
    assert client.stats()["rejected_by_status"] == {413: 1}


def test_retry_after_pauses_without_using_up_retries(collector, make_client) -> None:
    clock = FakeClock()
    client = make_client(clock=clock, max_retries=0)  # no counted retries at all
    collector.fail_next(2, 429, retry_after=7)
    send_and_check(client, collector)
    assert clock.waits == [7.0, 7.0]


def test_retry_after_http_date_and_cap(collector, make_client) -> None:
    clock = FakeClock(wall_start=1_700_000_000.0)
    client = make_client(clock=clock)
    later = email.utils.formatdate(1_700_000_000.0 + 42, usegmt=True)
    collector.fail_next(1, 503, retry_after=later)
    collector.fail_next(1, 429, retry_after=100000)
    send_and_check(client, collector)
    assert clock.waits == [pytest.approx(42, abs=0.01), 300.0]


def test_retry_after_budget_bounds_rate_limiting(collector, make_client) -> None:
    clock = FakeClock()
    errors = []
    client = make_client(
        clock=clock, max_rate_limit_duration=20, on_error=lambda exc, msgs: errors.append(exc)
    )
    collector.fail_next(10, 429, retry_after=8)
    client.track("u", "Throttled")
    assert client.flush(timeout=10)
    assert clock.waits == [8.0, 8.0]  # a third wait would pass the 20 s budget
    assert client.stats()["dropped"]["retries_exhausted"] == 1
    assert isinstance(errors[0], RetriesExhaustedError)


def test_retries_exhausted_is_counted_and_reported(collector, make_client) -> None:
    clock = FakeClock()
    errors = []
    client = make_client(clock=clock, max_retries=2, on_error=lambda exc, msgs: errors.append((exc, msgs)))
    collector.fail_next(5, 503)
    _, message = client.track("u", "Doomed")
    assert client.flush(timeout=10)
    assert len(collector.requests) == 3
    [(exc, messages)] = errors
    assert isinstance(exc, RetriesExhaustedError) and exc.attempts == 3
    assert f"503 fault injected by the local collector: answering 503 from 127.0.0.1:{collector.port}" in str(
        exc
    )
    assert [m["messageId"] for m in messages] == [message["messageId"]]
    assert client.stats()["dropped"]["retries_exhausted"] == 1


def test_total_backoff_budget_gives_up(collector, make_client) -> None:
    clock = FakeClock()
    client = make_client(clock=clock, max_retries=100, max_total_backoff_duration=3)
    collector.fail_next(200, 500)
    client.track("u", "Budgeted")
    assert client.flush(timeout=10)
    waits = clock.waits
    attempts = len(collector.requests)
    assert attempts == len(waits) + 1  # each backoff wait is followed by one more attempt
    assert attempts <= 100  # the time budget ended the retries, not max_retries
    assert sum(waits[:-1]) < 3  # not given up before the budget ended...
    assert sum(waits) == pytest.approx(3)  # ...nor waited past it: the last wait ends with it
    assert client.stats()["dropped"]["retries_exhausted"] == 1


def test_connection_resets_mid_request(collector, make_client) -> None:
    client = make_client()  # the default retry policy, real waits: a realistic recovery time
    collector.reset_next(3)
    elapsed = send_and_check(client, collector, n=50)
    print(f"recovered from 3 connection resets in {elapsed:.3f}s")
    assert collector.stats.resets == 3


def test_server_down_then_up(collector, make_client) -> None:
    client = make_client(retry_policy=fast_policy(max_retries=1000))
    collector.go_down()
    ids = {client.track("u", "Outage", {"i": i})[1]["messageId"] for i in range(20)}
    client.flush(timeout=0)  # wake the consumer now
    assert wait_until(lambda: client.stats()["retried"] >= 2)
    down_at = time.monotonic()
    collector.go_up()
    assert client.flush(timeout=30)
    print(f"delivered {len(ids)} messages {time.monotonic() - down_at:.3f}s after the server came back")
    assert collector.message_ids() == ids


def test_response_slower_than_timeout_is_retried(collector, make_client) -> None:
    client = make_client(timeout=0.3, retry_policy=fast_policy())
    collector.delay_next(1, 2.0)
    elapsed = send_and_check(client, collector, n=5)
    print(f"recovered from a timed-out request in {elapsed:.3f}s")
    assert collector.wait_for_requests(2, timeout=10)  # the abandoned one is recorded once its delay ends
    assert len(collector.message_ids()) == 5


def test_idle_connection_closed_by_server_is_retried_at_once(collector, make_client) -> None:
    clock = FakeClock()
    client = make_client(clock=clock)
    send_and_check(client, collector, n=2)
    assert collector.close_idle_connections() >= 1
    _, message = client.track("u", "After Idle")
    assert client.flush(timeout=10)
    assert message["messageId"] in collector.message_ids()
    assert clock.waits == []  # no backoff


def test_flush_deadline_and_recovery(collector, make_client) -> None:
    client = make_client(retry_policy=fast_policy(max_retries=1000))
    collector.go_down()
    client.track("u", "Later")
    started = time.monotonic()
    assert client.flush(timeout=0.3) is False
    assert time.monotonic() - started < 5
    collector.go_up()
    assert client.flush(timeout=30) is True
    assert len(collector.message_ids()) == 1


def test_shutdown_interrupts_a_long_backoff(collector, make_client) -> None:
    errors = []
    client = make_client(
        retry_policy=RetryPolicy(base_delay_s=30, jitter=no_jitter),
        on_error=lambda exc, msgs: errors.append(("on_error", exc, msgs)),
        on_drop=lambda reason, exc, msgs: errors.append((reason, exc, msgs)),
    )
    collector.fail_next(100, 503)
    client.track("u", "Stuck")
    client.flush(timeout=0)
    assert wait_until(lambda: client.stats()["retried"] >= 1)
    started = time.monotonic()
    assert client.shutdown(timeout=0.2) is False
    assert time.monotonic() - started < 5  # not the 30 s backoff
    assert client.stats()["dropped"]["shutdown_timeout"] == 1
    [(reason, error, messages)] = errors  # reported to on_drop (not a delivery failure), once
    assert reason == "shutdown_timeout" and isinstance(error, ShutdownError)
    assert messages[0]["event"] == "Stuck"


def test_shutdown_interrupts_retry_after(collector, make_client) -> None:
    client = make_client()
    collector.fail_next(100, 429, retry_after=250)
    client.track("u", "Paused")
    client.flush(timeout=0)
    assert wait_until(lambda: client.stats()["retried"] >= 1)
    started = time.monotonic()
    assert client.shutdown(timeout=0.2) is False
    assert time.monotonic() - started < 5
    assert client.stats()["dropped"]["shutdown_timeout"] == 1


def idle_client(make_client, **kwargs):
    """A client whose consumer never sends on its own (only flush() makes it)."""
    kwargs.setdefault("upload_interval", 3600)
    kwargs.setdefault("upload_size", 2500)
    return make_client(**kwargs)


def test_full_queue_refuses_counts_reports_and_warns(collector, make_client, caplog) -> None:
    reports = []
    errors = []
    client = idle_client(
        make_client,
        max_queue_size=5,
        on_drop=lambda reason, exc, msgs: reports.append((reason, exc, msgs)),
        on_error=lambda exc, msgs: errors.append(exc),
    )
    caplog.set_level(logging.WARNING, logger="segment")
    results = [client.track("u", "Burst", {"i": i}) for i in range(8)]
    assert [ok for ok, _ in results] == [True] * 5 + [False] * 3
    assert client.stats()["dropped"]["queue_full"] == 3
    # The first drop is reported at once; the rest of the burst is held, not reported per message.
    [(reason, error, messages)] = reports
    assert reason == "queue_full" and isinstance(error, QueueFullError)
    assert str(error).startswith("queue is full: 5 messages, ")
    assert str(error).endswith(f"(max_queue_size=5, max_queue_bytes={64 * 1024 * 1024})")
    assert [m["properties"]["i"] for m in messages] == [5]
    warnings = [r for r in caplog.records if "queue_full" in r.getMessage()]
    assert len(warnings) == 1
    assert client.flush(timeout=10)
    # One call for the rest of the burst.
    assert [[m["properties"]["i"] for m in msgs] for _, _, msgs in reports] == [[5], [6, 7]]
    assert errors == []  # on_error is for delivery failures only
    assert len(collector.message_ids()) == 5


def test_queue_is_bounded_in_bytes(collector, make_client) -> None:
    client = idle_client(make_client, max_queue_bytes=5000)
    results = [client.track("u", "Heavy", {"blob": "x" * 900})[0] for _ in range(10)]
    assert 1 <= sum(results) < 10
    assert client.queue.nbytes() <= 5000
    assert client.stats()["dropped"]["queue_full"] == 10 - sum(results)


@pytest.mark.threads_only  # on_full='block' would block the event loop: AsyncClient refuses it
def test_block_policy_loses_nothing(collector, make_client) -> None:
    client = make_client(on_full="block", max_queue_size=10, upload_size=5)
    ids = set()
    for i in range(500):
        ok, message = client.track("u", "Import", {"i": i})
        assert ok
        ids.add(message["messageId"])
    assert client.flush(timeout=30)
    assert collector.message_ids() == ids
    assert client.stats()["dropped_total"] == 0


@pytest.mark.threads_only
def test_block_policy_timeout_refuses(collector, make_client) -> None:
    client = idle_client(make_client, on_full="block", block_timeout=1.0, max_queue_size=2)
    collector.go_down()
    # A and B fill the queue; C waits, wakes the consumer, which takes A and B and
    # keeps retrying them against the dead server; C and D then fit; E times out.
    results = [client.track("u", name)[0] for name in "ABCDE"]
    assert results == [True, True, True, True, False]
    assert client.stats()["dropped"]["queue_full"] == 1


def test_track_after_shutdown_is_refused_and_counted(collector, make_client) -> None:
    errors = []
    client = make_client(on_drop=lambda reason, exc, msgs: errors.append(exc))
    client.track("u", "Before")
    assert client.shutdown(timeout=10)
    ok, _ = client.track("u", "After")
    assert not ok
    assert client.stats()["dropped"]["after_shutdown"] == 1
    assert isinstance(errors[-1], ShutdownError)
    assert len(collector.message_ids()) == 1


@pytest.mark.threads_only  # sync_mode: AsyncClient's immediate sends are the *_now calls
def test_before_send_hooks_enrich_filter_and_survive_errors(collector, make_client) -> None:
    def enrich(message):
        message["properties"]["env"] = "test"
        return message

    def drop_internal(message):
        return None if message.get("event") == "Internal" else message

    def broken(message):
        raise RuntimeError("hook bug")

    client = make_client(before_send=[enrich, drop_internal, broken], sync_mode=True)
    ok, sent = client.track("u", "Visible", {})
    assert ok and sent["properties"] == {"env": "test"}
    ok, _ = client.track("u", "Internal", {})
    assert not ok
    stored = collector.messages()
    assert [m["event"] for m in stored] == ["Visible"] and stored[0]["properties"] == {"env": "test"}
    stats = client.stats()
    assert stats["filtered"] == 1 and stats["hook_errors"] == 1


def test_before_send_runs_before_the_size_check(make_client) -> None:
    from segment_lite import MessageTooLargeError

    client = make_client(before_send=lambda m: {**m, "properties": {"blob": "x" * 40000}}, send=False)
    with pytest.raises(MessageTooLargeError):
        client.track("u", "Grown")


def test_before_send_must_return_a_dict(make_client) -> None:
    client = make_client(before_send=lambda m: "nope", send=False)
    with pytest.raises(ValidationError, match="must return a dict or None, got str"):
        client.track("u", "E")


def test_stats_add_up(collector, make_client) -> None:
    clock = FakeClock()
    client = make_client(clock=clock, max_retries=0)
    collector.fail_next(1, 400)
    client.track("u", "First")
    assert client.flush(timeout=10)
    for i in range(4):
        client.track("u", "Next", {"i": i})
    assert client.flush(timeout=10)
    stats = client.stats()
    assert stats["accepted"] == 5
    assert stats["delivered"] == 4
    assert stats["accepted"] == stats["delivered"] + stats["dropped"]["rejected"] + stats["queued"]


def test_write_key_never_logged_at_debug(collector, make_client, caplog) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, urllib3 included
    errors = []
    client = make_client(debug=True, on_error=lambda exc, msgs: errors.append(exc))
    collector.fail_next(1, 400, body={"code": "invalid", "message": f"bad key {WRITE_KEY}"})
    client.track("u", "Logged", {"secret_free": True})
    assert client.flush(timeout=10)
    client.track("u", "Logged Again")
    assert client.flush(timeout=10)
    text = caplog.text
    assert "Logged" in text  # payloads are logged at DEBUG...
    assert WRITE_KEY not in text  # ...without the key
    import base64

    assert base64.b64encode(f"{WRITE_KEY}:".encode()).decode() not in text
    assert WRITE_KEY not in repr(client) and WRITE_KEY not in str(errors[0])
    assert json.loads(collector.requests[-1].raw_body)["writeKey"] == WRITE_KEY  # still sent


def test_multithreaded_producers_lose_nothing(collector, make_client) -> None:
    client = make_client(thread=2)
    ids: list[str] = []
    lock = threading.Lock()

    def produce(worker: int) -> None:
        for i in range(250):
            _, message = client.track(f"user-{worker}", "Concurrent", {"i": i})
            with lock:
                ids.append(message["messageId"])

    threads = [threading.Thread(target=produce, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert client.flush(timeout=30)
    assert collector.message_ids() == set(ids) and len(ids) == 1000


def test_mark_and_wait_settled_confirm_an_earlier_chunk(collector, make_client) -> None:
    client = make_client(upload_interval=0.01)
    first = {client.track("u", "Chunk One", {"i": i})[1]["messageId"] for i in range(20)}
    mark = client.mark()
    assert client.wait_settled(mark, timeout=10)
    assert first <= collector.message_ids()


def test_redaction_masks_whole_keys_only(collector, make_client) -> None:
    errors = []
    client = make_client(write_key="k", on_error=lambda exc, msgs: errors.append(str(exc)))
    collector.fail_next(1, 400, body={"code": "unknown", "message": "wrong write key: k"})
    client.track("u", "E")
    client.flush(timeout=10)
    assert errors == [f"[127.0.0.1:{collector.port}] unknown: wrong write key: *** (400)"]


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_reported_not_followed(collector, make_client, status) -> None:
    errors = []
    client = make_client(on_error=lambda exc, msgs: errors.append(exc))
    collector.fail_next(1, status, headers={"Location": collector.url + "/elsewhere"})
    ok, _ = client.track("u", "Redirected")
    assert ok and client.flush(timeout=10)
    assert [r.path for r in collector.requests] == ["/v1/batch"]  # nothing followed the Location
    [error] = errors
    assert isinstance(error, APIError) and error.status == status and error.code == "redirect"
    assert f"redirected to {collector.url}/elsewhere" in error.message
    assert client.stats()["rejected_by_status"] == {status: 1}
