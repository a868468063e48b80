"""The delivery rules as a table: ``decide`` for each answer and failure, with no threads or sockets."""

from __future__ import annotations

import time
from typing import Optional

import pytest

import segment_lite
from segment_lite.delivery import Action, Attempt, BatchProgress, Decision, Failure, Part, RetryBudget, decide
from segment_lite.retry import RetryPolicy
from segment_lite.testing import FakeClock
from tests.conftest import WRITE_KEY

POLICY = RetryPolicy(
    max_retries=3, max_total_backoff_s=100.0, max_rate_limit_s=20.0, jitter=lambda step: step
)


def part(size: int = 4, policy: RetryPolicy = POLICY) -> Part:
    return Part(0, size, RetryBudget(policy))


def answered(status: int, now: float = 0.0, retry_after_s: Optional[float] = None) -> Attempt:
    return Attempt(now, status, error=f"{status} from server", retry_after_s=retry_after_s)


def failed(failure: Failure, now: float = 0.0) -> Attempt:
    return Attempt(now, failure=failure, error=f"{failure.value} failure")


@pytest.mark.parametrize(
    ("result", "size", "expected"),
    [
        (answered(200), 4, Decision(Action.DELIVERED)),
        (answered(204), 1, Decision(Action.DELIVERED)),
        (answered(413), 4, Decision(Action.SPLIT)),  # too large: send the halves
        (answered(413), 1, Decision(Action.REJECT)),  # one message too large: nothing to split
        (answered(400), 4, Decision(Action.SPLIT)),  # bisect to find the message(s) refused
        (answered(400), 1, Decision(Action.REJECT)),
        (answered(401), 4, Decision(Action.REJECT)),
        (answered(403), 4, Decision(Action.REJECT)),
        (answered(404), 4, Decision(Action.REJECT)),
        (answered(422), 4, Decision(Action.REJECT)),
        (answered(301), 4, Decision(Action.REJECT)),  # redirects are not followed
        (answered(501), 4, Decision(Action.REJECT)),
        (answered(500), 4, Decision(Action.BACKOFF, 0.015)),
        (answered(503), 4, Decision(Action.BACKOFF, 0.015)),
        (answered(429), 4, Decision(Action.BACKOFF, 0.015)),
        (answered(429, retry_after_s=5.0), 4, Decision(Action.PAUSE, 5.0)),
        (answered(503, retry_after_s=0.0), 4, Decision(Action.BACKOFF, 0.015)),  # "0" is no pause
        (failed(Failure.OTHER), 4, Decision(Action.BACKOFF, 0.015)),
        (failed(Failure.CLOSED), 4, Decision(Action.BACKOFF, 0.015)),  # one close proves nothing
        (failed(Failure.STALE), 4, Decision(Action.RETRY_NOW)),  # a kept-alive connection closed while idle
        (failed(Failure.ABORTED), 4, Decision(Action.ABORTED)),
    ],
    ids=lambda value: getattr(value, "error", None) or str(value),
)
def test_one_attempt(result: Attempt, size: int, expected: Decision) -> None:
    assert decide(result, part(size), BatchProgress(alive_before=True)) == expected


def test_a_stale_connection_is_retried_at_once_only_once_per_part() -> None:
    sent, batch = part(), BatchProgress(alive_before=False)
    assert decide(failed(Failure.STALE), sent, batch).action is Action.RETRY_NOW
    # The second close of this part: nothing proves the server alive, nothing else waits.
    assert decide(failed(Failure.STALE), sent, batch) == Decision(Action.BACKOFF, 0.015)


def test_retries_are_counted_until_max_retries() -> None:
    sent, batch = part(), BatchProgress(alive_before=True)
    waits = [decide(answered(503, now=float(i)), sent, batch) for i in range(4)]
    assert waits == [
        Decision(Action.BACKOFF, 0.015),
        Decision(Action.BACKOFF, 0.045),
        Decision(Action.BACKOFF, 0.135),
        Decision(Action.EXHAUSTED, failing_s=3.0),  # the fourth failure: 3 retries were allowed
    ]
    assert sent.budget.counted == 4 and sent.budget.last_status == 503


def test_the_time_budget_caps_the_last_wait_and_then_gives_up() -> None:
    policy = RetryPolicy(max_retries=100, base_delay_s=30.0, max_total_backoff_s=100.0, jitter=lambda s: s)
    sent, batch = part(policy=policy), BatchProgress(alive_before=True)
    assert decide(failed(Failure.OTHER, now=0.0), sent, batch) == Decision(Action.BACKOFF, 30.0)
    assert decide(failed(Failure.OTHER, now=90.0), sent, batch) == Decision(Action.BACKOFF, 10.0)
    assert decide(failed(Failure.OTHER, now=100.0), sent, batch) == Decision(
        Action.EXHAUSTED, failing_s=100.0
    )
    assert sent.budget.last_status is None and sent.budget.last_error == "other failure"


def test_retry_after_waits_are_not_counted_but_bounded() -> None:
    sent, batch = part(), BatchProgress(alive_before=True)
    for _ in range(4):  # more than max_retries, none counted
        assert decide(answered(429, retry_after_s=5.0), sent, batch) == Decision(Action.PAUSE, 5.0)
    assert sent.budget.counted == 0 and sent.budget.rate_limited_s == 20.0
    assert decide(answered(429, retry_after_s=5.0), sent, batch).action is Action.EXHAUSTED
    assert sent.budget.last_error.endswith("Retry-After waits exceeded the budget")


def test_two_closes_split_once_on_trust_then_defer_or_back_off() -> None:
    batch = BatchProgress(alive_before=True)  # the request before this batch was answered
    first = part(8)
    assert decide(failed(Failure.CLOSED), first, batch).action is Action.BACKOFF
    assert decide(failed(Failure.CLOSED), first, batch).action is Action.SPLIT  # on trust
    half = Part(0, 4, RetryBudget(POLICY))
    decide(failed(Failure.CLOSED), half, batch)
    batch.others_waiting = True
    assert decide(failed(Failure.CLOSED), half, batch).action is Action.DEFER  # no second split on trust
    batch.others_waiting = False
    assert decide(failed(Failure.CLOSED), half, batch).action is Action.BACKOFF


def test_two_closes_without_trust_do_not_split() -> None:
    batch = BatchProgress(alive_before=False)
    sent = part(8)
    decide(failed(Failure.CLOSED), sent, batch)
    assert decide(failed(Failure.CLOSED), sent, batch).action is Action.BACKOFF


def test_a_server_alive_after_the_first_close_bisects_to_the_message_and_rejects_it() -> None:
    batch = BatchProgress(alive_before=False)
    poison, other = Part(0, 2, RetryBudget(POLICY)), Part(2, 4, RetryBudget(POLICY))
    decide(failed(Failure.CLOSED), poison, batch)
    assert decide(answered(200), other, batch).action is Action.DELIVERED  # the server is alive
    assert decide(failed(Failure.CLOSED), poison, batch).action is Action.SPLIT
    alone = Part(0, 1, RetryBudget(POLICY))
    decide(failed(Failure.CLOSED), alone, batch)
    assert decide(failed(Failure.CLOSED), alone, batch).action is Action.REJECT


def test_a_lone_message_closed_twice_is_not_rejected_without_proof() -> None:
    batch = BatchProgress(alive_before=True, others_waiting=True)
    alone = part(1)
    decide(failed(Failure.CLOSED), alone, batch)
    assert decide(failed(Failure.CLOSED), alone, batch).action is Action.DEFER


# -- the injected clock drives flush and shutdown deadlines --------------------------------------


def test_a_fake_clock_drives_flush_and_shutdown_deadlines(collector, monkeypatch) -> None:
    from segment_lite.pipeline import Worker

    def refuse(self: Worker) -> None:  # no worker thread: flush delivers on the calling thread
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(Worker, "start", refuse)
    clock = FakeClock()
    client = segment_lite.Client(
        WRITE_KEY, host=collector.url, clock=clock, max_retries=1000, shutdown_timeout=None
    )
    collector.go_down()
    client.track("u", "Held")
    started, fake_start = time.monotonic(), clock.monotonic()
    # A minute of backoff on the fake clock; before, the flush also waited out its minute for real.
    assert client.flush(timeout=60) is False
    assert clock.monotonic() - fake_start == pytest.approx(60)
    assert client.stats()["dropped_total"] == 0 and client._pipeline.pending() == 1
    assert client.shutdown(timeout=60) is False
    assert clock.monotonic() - fake_start == pytest.approx(120)
    assert time.monotonic() - started < 10
    assert client.stats()["dropped"]["shutdown_timeout"] == 1
