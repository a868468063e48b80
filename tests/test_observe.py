"""Delivery observers against a real local collector: what they see, on which thread, and their failures."""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

import pytest

import segment_lite
from segment_lite.collector import Collector
from segment_lite.observe import DeliveryObserver, ObserverThread
from segment_lite.testing import FakeClock


class Recorder(DeliveryObserver):
    """Writes down each event with the thread it arrived on."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.threads: set[str] = set()
        self.drained_event = threading.Event()

    def _note(self, *event: Any) -> None:
        self.threads.add(threading.current_thread().name)
        self.events.append(event)

    def delivered(self, count: int) -> None:
        self._note("delivered", count)

    def retried(self) -> None:
        self._note("retried")

    def dropped(self, reason: str, count: int) -> None:
        self._note("dropped", reason, count)

    def batch_settled(self, count: int, delivered: int, nbytes: int, seconds: float) -> None:
        self._note("batch_settled", count, delivered, nbytes > 0, seconds >= 0)

    def drained(self) -> None:
        self._note("drained")
        self.drained_event.set()


def test_observer_sees_a_retried_then_delivered_batch_and_the_drain(
    collector: Collector, make_client: Callable[..., segment_lite.Client]
) -> None:
    observer = Recorder()
    collector.fail_next(1, 503)
    client = make_client(observers=[observer], clock=FakeClock(), upload_size=3)
    for n in range(3):
        client.track("u", f"E{n}")
    assert client.flush(10)
    assert observer.drained_event.wait(10)
    assert client._pipeline.ledger.wait_observers(5)
    assert observer.events == [
        ("retried",),
        ("delivered", 3),
        ("batch_settled", 3, 3, True, True),
        ("drained",),
    ]
    assert observer.threads == {"segment_lite-observers"}  # never the caller's or the sender's thread
    stats = client.stats()
    assert stats["sent_bytes"] > 0
    assert stats["delivery_seconds"]["count"] == 1
    assert stats["delivery_seconds"]["buckets"]["inf"] == 1


def test_observer_sees_drops_by_reason(
    collector: Collector, make_client: Callable[..., segment_lite.Client]
) -> None:
    observer = Recorder()
    collector.fail_next(1, 400)
    client = make_client(observers=observer, upload_size=1)  # one observer, not in a list
    client.track("u", "Refused")
    assert client.flush(10)
    with pytest.raises(segment_lite.MessageTooLargeError):
        client.track("u", "Big", {"blob": "x" * 40_000})
    assert client._pipeline.ledger.wait_observers(5)
    dropped = [event for event in observer.events if event[0] == "dropped"]
    assert dropped == [("dropped", "rejected", 1), ("dropped", "oversize", 1)]


def test_an_observer_that_raises_is_counted_and_delivery_goes_on(
    collector: Collector, make_client: Callable[..., segment_lite.Client]
) -> None:
    class Broken:
        def delivered(self, count: int) -> None:
            raise RuntimeError("metrics backend down")

    good = Recorder()
    client = make_client(observers=[Broken(), good], upload_size=1)
    client.track("u", "One")
    assert client.flush(10)
    client.track("u", "Two")
    assert client.flush(10)
    assert client._pipeline.ledger.wait_observers(5)
    assert collector.wait_for_messages(2)
    assert client.stats()["observer_errors"] == 2
    assert [e for e in good.events if e[0] == "delivered"] == [("delivered", 1), ("delivered", 1)]


def test_a_slow_observer_never_blocks_delivery_and_its_overflow_is_counted() -> None:
    counted: list[str] = []
    release = threading.Event()

    class Slow:
        def delivered(self, count: int) -> None:
            release.wait(10)

    events = ObserverThread([Slow()], counted.append, logging.getLogger("segment"), max_pending=2)
    for _ in range(10):  # the first blocks the thread; two wait; the rest overflow at once
        events.emit("delivered", 1)
    assert 7 <= counted.count("observer_overflow") <= 8
    release.set()
    assert events.stop(5)


def test_add_observer_and_bad_observers(make_client: Callable[..., segment_lite.Client]) -> None:
    observer = Recorder()
    client = make_client(upload_size=1)
    client.add_observer(observer)
    client.track("u", "E")
    assert client.flush(10)
    assert client._pipeline.ledger.wait_observers(5)
    assert ("delivered", 1) in observer.events
    with pytest.raises(segment_lite.ValidationError, match="observer needs one of"):
        client.add_observer(object())
    with pytest.raises(segment_lite.ValidationError, match="observer needs one of"):
        segment_lite.Client("k", send=False, observers=[object()])


def test_sync_mode_deliveries_are_observed(make_client: Callable[..., segment_lite.Client]) -> None:
    observer = Recorder()
    client = make_client(observers=[observer], sync_mode=True)
    client.track("u", "Now")
    assert client._pipeline.ledger.wait_observers(5)
    assert observer.events == [("delivered", 1)]


def test_a_broken_observer_is_logged_once_then_only_counted(caplog: pytest.LogCaptureFixture) -> None:
    counted: list[str] = []

    class Broken:
        def delivered(self, count: int) -> None:
            raise RuntimeError("down")

    events = ObserverThread([Broken()], counted.append, logging.getLogger("segment"))
    with caplog.at_level(logging.ERROR, logger="segment"):
        for _ in range(5):
            events.emit("delivered", 1)
        assert events.wait_idle(5)
    assert counted == ["observer_errors"] * 5
    assert len([r for r in caplog.records if "raised in delivered()" in r.getMessage()]) == 1
    assert events.stop(5)
