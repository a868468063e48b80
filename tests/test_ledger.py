"""The ledger: on_error for delivery failures, rate-limited on_drop for everything else, counts for all."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from segment_lite.errors import APIError, QueueFullError, ShutdownError
from segment_lite.ledger import MAX_MESSAGES_PER_REPORT, REPORT_INTERVAL_S, Ledger
from segment_lite.testing import RecordingClient

log = logging.getLogger("segment_lite.tests")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_ledger(**kwargs: Any) -> tuple[Ledger, Clock, list[Any], list[Any]]:
    clock = Clock()
    errors: list[Any] = []
    drops: list[Any] = []
    ledger = Ledger(
        lambda exc, msgs: errors.append((exc, msgs)),
        log,
        "secret-key",
        on_drop=lambda reason, exc, msgs: drops.append((reason, exc, msgs)),
        monotonic=clock,
        **kwargs,
    )
    return ledger, clock, errors, drops


def test_delivery_failures_go_to_on_error_at_once_and_nothing_else_does() -> None:
    ledger, _, errors, drops = make_ledger()
    ledger.drop("rejected", APIError(400, "bad", "no"), [b'{"event":"A"}'], status=400)
    ledger.drop("rejected", APIError(400, "bad", "no"), [b'{"event":"B"}'], status=400)
    ledger.drop("queue_full", QueueFullError("full"), [{"event": "C"}])
    assert [msgs[0]["event"] for _, msgs in errors] == ["A", "B"]  # decoded, one call per batch
    assert [(reason, msgs[0]["event"]) for reason, _, msgs in drops] == [("queue_full", "C")]


def test_a_burst_is_one_report_now_and_one_later() -> None:
    ledger, clock, _, drops = make_ledger()
    for i in range(10_000):
        ledger.drop("queue_full", QueueFullError(f"full {i}"), [{"i": i}])
    assert len(drops) == 1  # the first, at once
    clock.now += REPORT_INTERVAL_S / 2
    ledger.deliver_due_reports()
    assert len(drops) == 1  # still within the interval
    clock.now += REPORT_INTERVAL_S
    ledger.deliver_due_reports()
    [_, (reason, error, messages)] = drops
    assert reason == "queue_full" and str(error) == "full 9999"  # the latest error
    assert len(messages) == MAX_MESSAGES_PER_REPORT and messages[0] == {"i": 1}
    assert ledger.snapshot(0, 0, 0)["dropped"]["queue_full"] == 10_000  # every one counted


def test_the_first_report_of_a_reason_carries_at_most_the_documented_cap() -> None:
    # docs/configuration.md: on_drop carries at most 1,000 messages a call, the first report too.
    ledger, _, _, drops = make_ledger()
    shutdown = ShutdownError("deadline passed")
    ledger.drop("shutdown_timeout", shutdown, [{"i": i} for i in range(MAX_MESSAGES_PER_REPORT + 500)])
    [(reason, error, messages)] = drops
    assert reason == "shutdown_timeout" and error is shutdown
    assert len(messages) == MAX_MESSAGES_PER_REPORT and messages[0] == {"i": 0}
    assert messages[-1] == {"i": MAX_MESSAGES_PER_REPORT - 1}
    assert ledger.snapshot(0, 0, 0)["dropped"]["shutdown_timeout"] == MAX_MESSAGES_PER_REPORT + 500
    ledger.warn(
        "coerced", ValueError("event is empty"), [{"i": i} for i in range(2 * MAX_MESSAGES_PER_REPORT)]
    )
    assert len(drops[-1][2]) == MAX_MESSAGES_PER_REPORT
    assert ledger.snapshot(0, 0, 0)["warnings"]["coerced"] == 2 * MAX_MESSAGES_PER_REPORT


def test_a_report_after_the_interval_carries_the_held_ones() -> None:
    ledger, clock, _, drops = make_ledger()
    ledger.drop("after_shutdown", ShutdownError("late"), [{"i": 0}])
    ledger.drop("after_shutdown", ShutdownError("late"), [{"i": 1}])
    clock.now += REPORT_INTERVAL_S
    ledger.drop("after_shutdown", ShutdownError("late"), [{"i": 2}])
    assert [[m["i"] for m in msgs] for _, _, msgs in drops] == [[0], [1, 2]]


def test_flush_reports_delivers_what_is_held() -> None:
    ledger, _, _, drops = make_ledger()
    for i in range(3):
        ledger.drop("queue_full", QueueFullError("full"), [{"i": i}])
        ledger.warn("coerced", ValueError("event is empty"), [{"i": i}])
    ledger.flush_reports()
    assert sorted((reason, len(msgs)) for reason, _, msgs in drops) == [
        ("coerced", 1),
        ("coerced", 2),
        ("queue_full", 1),
        ("queue_full", 2),
    ]
    assert ledger.snapshot(0, 0, 0)["warnings"]["coerced"] == 3
    assert ledger.snapshot(0, 0, 0)["dropped_total"] == 3  # warnings are not drops


def test_a_raising_hook_is_logged_and_a_falsy_one_ignored(caplog: pytest.LogCaptureFixture) -> None:
    def boom(*args: Any) -> None:
        raise RuntimeError("hook bug")

    ledger = Ledger(boom, log, on_drop=boom)
    ledger.drop("rejected", APIError(400, "bad", "no"), [b"{}"])
    ledger.drop("queue_full", QueueFullError("full"), [{}])
    assert "on_error callback raised" in caplog.text and "on_drop callback raised" in caplog.text
    quiet = Ledger(False, log)  # type: ignore[arg-type]  # segment.analytics code sets on_error = False
    quiet.drop("rejected", APIError(400, "bad", "no"), [b"{}"])
    assert quiet.snapshot(0, 0, 0)["dropped"]["rejected"] == 1


def test_the_write_key_is_redacted_from_logs(caplog: pytest.LogCaptureFixture) -> None:
    ledger, _, _, _ = make_ledger()
    with caplog.at_level(logging.WARNING, logger=log.name):
        ledger.drop("queue_full", QueueFullError("key secret-key refused"), [{}])
    assert "secret-key" not in caplog.text and "***" in caplog.text


def test_filtered_messages_are_reported_to_on_drop() -> None:
    drops: list[Any] = []
    client = RecordingClient(
        before_send=lambda message: None, on_drop=lambda reason, exc, msgs: drops.append((reason, msgs))
    )
    ok, _ = client.track("u", "Hidden")
    assert not ok
    assert drops == [("filtered", [drops[0][1][0]])] and drops[0][1][0]["event"] == "Hidden"
    assert client.stats()["filtered"] == 1 and client.messages == []
