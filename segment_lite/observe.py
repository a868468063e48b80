"""Delivery observers: what happened to batches, told to user code on a thread of its own.

An observer is any object with some of these methods (subclass
:class:`DeliveryObserver` to get no-op defaults for the rest):

* ``delivered(count)``: the server accepted ``count`` messages;
* ``retried()``: a request is about to be retried (a failure, a 5xx, a 429);
* ``dropped(reason, count)``: ``count`` messages were lost for ``reason`` (the
  reasons of ``stats()["dropped"]``);
* ``batch_settled(count, delivered, nbytes, seconds)``: a batch taken from the
  queue is settled: ``delivered`` of its ``count`` messages (``nbytes`` encoded
  bytes) were accepted, ``seconds`` after it was taken (retries and waits included);
* ``drained()``: the queue is empty and no batch is in flight, after a delivery.

Events are queued (at most :data:`MAX_PENDING_EVENTS`) and handed to the observers
by one daemon thread per client, so a slow observer never delays delivery or the
caller: when it falls that far behind, further events are counted in
``stats()["observer_overflow"]`` and not delivered. An exception an observer
raises is counted in ``stats()["observer_errors"]``, never raised; its first failure
per method is logged with the traceback, the later ones at DEBUG.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from typing import Any, Callable, Optional

__all__ = ["EVENTS", "MAX_PENDING_EVENTS", "DeliveryObserver", "ObserverThread"]

#: The observer methods, in the order a batch meets them.
EVENTS = ("retried", "delivered", "dropped", "batch_settled", "drained")
#: Events waiting for a slow observer before new ones are counted as overflow.
MAX_PENDING_EVENTS = 10_000
_STOP = object()


class DeliveryObserver:
    """A base class for observers: every method does nothing; override the ones you need."""

    def delivered(self, count: int) -> None:
        """The server accepted ``count`` messages."""

    def retried(self) -> None:
        """A request failed in a way that is retried, and is about to be."""

    def dropped(self, reason: str, count: int) -> None:
        """``count`` messages were lost for ``reason``."""

    def batch_settled(self, count: int, delivered: int, nbytes: int, seconds: float) -> None:
        """A batch of ``count`` messages (``nbytes`` bytes) was settled ``seconds`` after it was taken."""

    def drained(self) -> None:
        """The queue is empty and nothing is in flight."""


class ObserverThread:
    """Hands events to the observers on a daemon thread; started by the first event."""

    def __init__(
        self,
        observers: Sequence[Any],
        count_error: Callable[[str], None],
        log: logging.Logger,
        max_pending: int = MAX_PENDING_EVENTS,
    ) -> None:
        self._observers = observers
        self._count = count_error
        self._log = log
        self._events: queue.Queue[Any] = queue.Queue(max_pending)
        self._thread: Optional[threading.Thread] = None
        self._start_lock = threading.Lock()
        self._failed: set[tuple[int, str]] = set()  # (observer, method) that raised already

    def emit(self, event: str, *args: Any) -> None:
        """Queue one event; never blocks (an event that finds the queue full is counted, not kept)."""
        if not self._observers:
            return
        if self._thread is None:
            self._start()
        try:
            self._events.put_nowait((event, args))
        except queue.Full:
            self._count("observer_overflow")

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="segment_lite-observers", daemon=True)
                thread.start()
                self._thread = thread

    def _run(self) -> None:
        while True:
            item = self._events.get()
            if item is _STOP:
                return
            event, args = item
            if event == "_idle_marker":
                args[0].set()
                continue
            for observer in list(self._observers):
                method = getattr(observer, event, None)
                if method is None:
                    continue
                try:
                    method(*args)
                except Exception:
                    self._count("observer_errors")
                    # The first failure of each observer method is logged with its traceback;
                    # the rest only at DEBUG, so a broken observer cannot flood the log.
                    key = (id(observer), event)
                    if key in self._failed:
                        self._log.debug(
                            "delivery observer %r raised in %s() again", observer, event, exc_info=True
                        )
                    else:
                        self._failed.add(key)
                        self._log.exception(
                            "delivery observer %r raised in %s() (counted as observer_errors; "
                            "later failures are logged at DEBUG)",
                            observer,
                            event,
                        )

    def stop(self, timeout_s: Optional[float] = 1.0) -> bool:
        """Deliver the events queued so far (waiting at most ``timeout_s``), then end the thread."""
        thread = self._thread
        if thread is None:
            return True
        try:
            self._events.put(_STOP, timeout=timeout_s)
        except queue.Full:
            return False
        thread.join(timeout_s)
        if not thread.is_alive():
            self._thread = None
            return True
        return False

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every queued event was handed out (for tests and shutdown); False on timeout."""
        done = threading.Event()
        if self._thread is None:
            return True
        try:
            self._events.put(("_idle_marker", (done,)), timeout=timeout_s)
        except queue.Full:
            return False
        return done.wait(timeout_s)
