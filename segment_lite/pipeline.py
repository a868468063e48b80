"""The delivery pipeline: worker threads, wake-ups, flush and shutdown, the fork reset and the exit flush.

A ``Client`` hands each encoded message to its ``Pipeline`` and never touches a
thread. The pipeline owns everything with a lifecycle: the queue (made by a
factory, so the memory queue and a disk spool are interchangeable), the worker
threads that take batches from it, the senders they post with, and the ledger
that counts every message. The shape follows OpenTelemetry's batch processor:
workers sleep until a batch is full, the interval passes or a flush wakes them;
``shutdown(timeout)`` is bounded; a forked child rebuilds its locks, queue and
threads on first use; interpreter exit flushes what is still queued.
"""

from __future__ import annotations

import atexit
import dataclasses
import enum
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from segment_lite.after_fork import on_fork_in_child
from segment_lite.errors import APIError, SegmentLiteError, ShutdownError, SpoolWriteError
from segment_lite.health import DeliveryHealth
from segment_lite.ledger import Credentials, Ledger, OnDrop, OnError
from segment_lite.outcomes import OutcomeSubscriber
from segment_lite.queue import Batch, MessageQueue
from segment_lite.retry import Clock, RetryPolicy
from segment_lite.sender import MAX_BATCH_COUNT, BatchSender, PipelinePause, Settlement
from segment_lite.transport import TransportFactory

__all__ = [
    "QUEUED",
    "Accepted",
    "BatchingConfig",
    "DeliveryConfig",
    "FlushResult",
    "InFlight",
    "Pipeline",
    "QueueFactory",
    "Worker",
]

#: Makes the queue for a pipeline; called again in a forked child.
QueueFactory = Callable[[], MessageQueue]
#: How long ``shutdown`` waits for workers to stop once it has given up on delivery. Their
#: requests are aborted and their messages already counted, so this is only for tidiness.
WORKER_STOP_GRACE_S = 0.25
#: How long closing a pipeline waits for delivery observers to take the events queued for them.
OBSERVER_STOP_S = 1.0
#: Drops of accepted messages, as ``stats()["dropped"]`` names them.
_ACCEPTED_DROPS = ("rejected", "retries_exhausted", "shutdown_timeout")


class Accepted(enum.Enum):
    """What became of a message handed to ``Pipeline.accept``."""

    QUEUED = "queued"
    FULL = "full"  # no room in the queue (after waiting, when blocking)
    CLOSED = "closed"  # the pipeline was shut down
    FAILED = "failed"  # the queue could not store it (a spool's disk is full); counted and reported


#: ``Accepted.QUEUED``, the answer to nearly every call: looking a member up on its
#: Enum class costs about 50 ns on Python 3.11, a module global a few.
QUEUED = Accepted.QUEUED


@dataclass(frozen=True)
class DeliveryConfig:
    """What a sender needs to post batches: where, how, and how hard to retry."""

    url: str
    write_key: str = field(repr=False)  # never in a repr (a traceback with locals shows them)
    gzip: bool
    timeout_s: float
    retry_policy: RetryPolicy
    transport_factory: TransportFactory
    clock: Clock


@dataclass(frozen=True)
class BatchingConfig:
    """When workers send, and how big their batches may be."""

    threads: int
    upload_size: int
    upload_interval_s: float
    max_batch_size: int
    max_batch_bytes: int


@dataclass(frozen=True)
class FlushResult:
    """What the last ``flush()`` (or ``shutdown()``) settled, read with ``Client.last_flush``.

    Counts are of messages settled while the call waited: ``delivered``, and
    ``dropped`` by reason (``rejected``, ``retries_exhausted``, ``shutdown_timeout``).
    ``settled`` is what the call returned; ``pending`` is how many messages were
    still queued or in flight when it returned. ``last_error`` names the latest
    failure or refusal, if any.
    """

    settled: bool
    delivered: int
    dropped: dict[str, int] = field(default_factory=dict)
    pending: int = 0
    last_error: Optional[str] = None

    @property
    def all_delivered(self) -> bool:
        """True when the flush settled and nothing was dropped while it waited."""
        return self.settled and not any(self.dropped.values())


class _Taken:
    """A batch taken from the queue, with the settlement of its messages and when it was taken."""

    __slots__ = ("batch", "settlement", "taken_at")

    def __init__(self, batch: Batch, settlement: Settlement, taken_at: float) -> None:
        self.batch = batch
        self.settlement = settlement
        self.taken_at = taken_at


class InFlight:
    """Batches taken from the queue and not yet settled, so a shutdown that gives up can settle them.

    Workers (and inline delivery) take batches through it; each is ``finish``-ed
    once, by its sender or by ``abandon``, and only then marked done in the queue,
    after its messages were counted.
    """

    def __init__(self, queue: MessageQueue, ledger: Ledger) -> None:
        self._queue = queue
        self._ledger = ledger
        self._lock = threading.Lock()
        self._taken: dict[_Taken, None] = {}  # insertion-ordered set
        self._closed = False

    def take(self, max_count: int, max_bytes: int) -> Optional[_Taken]:
        """The next batch from the queue, registered; None when empty or abandoned."""
        with self._lock:
            if self._closed:
                return None
            batch = self._queue.take(max_count, max_bytes)
            if batch is None:
                return None
            settlement = Settlement(batch.items, self._ledger, self._queue.durable)
            taken = _Taken(batch, settlement, self._ledger.monotonic())
            self._taken[taken] = None
            return taken

    def held(self) -> list[_Taken]:
        """Batches taken and not finished (inline delivery resumes them)."""
        with self._lock:
            return list(self._taken)

    def finish(self, taken: _Taken) -> None:
        """Mark ``taken`` done in the queue, unless ``abandon`` did already."""
        with self._lock:
            present = taken in self._taken
            if present:
                del self._taken[taken]
        if present:
            items = taken.batch.items
            self._ledger.batch_settled(
                len(items),
                taken.settlement.delivered_count,
                taken.batch.nbytes,
                self._ledger.monotonic() - taken.taken_at,
            )
            self._queue.done(taken.batch, keep=taken.settlement.kept)

    def empty(self) -> bool:
        """True when no batch is in flight."""
        return not self._taken  # a read of a dict's size: no lock needed for a hint

    def abandon(self, error: BaseException) -> int:
        """Stop handing out batches; cut short what every batch in flight has not settled.

        Its messages are dropped as ``shutdown_timeout`` (or kept, in a durable
        queue). Returns how many were dropped.
        """
        with self._lock:
            self._closed = True
            taken, self._taken = list(self._taken), {}
        dropped = 0
        for entry in taken:
            dropped += entry.settlement.cut_short(error)
            self._queue.done(entry.batch, keep=entry.settlement.kept)
        return dropped


class Worker(threading.Thread):
    """A worker thread: takes batches from the queue and hands them to its sender.

    It sends when ``upload_size`` messages are waiting, when ``upload_interval_s``
    has passed, or at once when a flush wakes it. With a backlog it sends bigger
    batches, up to ``max_batch_size`` messages and ``max_batch_bytes``.
    """

    def __init__(
        self,
        queue: MessageQueue,
        in_flight: InFlight,
        sender: BatchSender,
        batching: BatchingConfig,
        abort: threading.Event,
        name: str,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.queue = queue
        self.in_flight = in_flight
        self.sender = sender
        self.upload_size = max(1, min(batching.upload_size, MAX_BATCH_COUNT))
        self.max_batch_size = max(self.upload_size, min(batching.max_batch_size, MAX_BATCH_COUNT))
        self.max_batch_bytes = batching.max_batch_bytes
        self.upload_interval_s = batching.upload_interval_s
        self.abort = abort
        self.stopping = False

    @property
    def timeout(self) -> float:
        """Seconds this worker's requests wait for the server (as the reference's consumers expose)."""
        return self.sender.timeout

    def run(self) -> None:
        queue = self.queue
        due = False  # take a batch now, rather than wait for one to fill or for the interval
        try:
            while not self.abort.is_set():
                if not due:
                    # Woken early by a full batch, a flush, blocked producers or a stop.
                    queue.wake.wait(self.upload_interval_s)
                queue.wake.clear()
                backlog = queue.qsize()
                count = self.upload_size if backlog <= self.upload_size else min(backlog, self.max_batch_size)
                taken = self.in_flight.take(count, self.max_batch_bytes)
                if taken is None:
                    if self.stopping:
                        queue.wake.set()  # siblings share this event: pass the wake-up on
                        return
                    due = False
                    continue
                try:
                    self.sender.deliver(taken.settlement, self.abort)
                finally:
                    self.in_flight.finish(taken)
                ledger = self.sender.ledger
                ledger.deliver_due_reports()
                if ledger.observers and queue.qsize() == 0 and self.in_flight.empty():
                    ledger.drained()
                # Send again at once only if that is worth a request: messages that
                # trickled in during the send wait to fill a batch, as they would have.
                due = self.stopping or queue.send_due(self.upload_size)
        finally:
            self.sender.close()


class PipelineBase:
    """What the threaded ``Pipeline`` and the asyncio one share: the accounting of every message.

    The ledger, queue and batches in flight of this process, ``last_flush``, the
    drops when shutdown's deadline passes, ``close`` and ``stats``; each pipeline
    drives delivery its own way (threads or tasks).
    """

    def __init__(
        self,
        queue_factory: QueueFactory,
        delivery: DeliveryConfig,
        batching: BatchingConfig,
        on_error: Optional[OnError],
        log: logging.Logger,
        shutdown_timeout_s: Optional[float],
        on_drop: Optional[OnDrop],
        credentials: Optional[Credentials],
        observers: list[Any],
    ) -> None:
        self._queue_factory = queue_factory
        # What to mask in logs and errors; shared with an OAuth token source, and kept across a fork.
        self.credentials = Credentials() if credentials is None else credentials
        #: Delivery observers (segment_lite.observe); the ledger of each process shares this list.
        self.observers = observers
        self.delivery = delivery
        self.batching = batching
        self.shutdown_timeout_s = shutdown_timeout_s
        self._on_error = on_error
        self._on_drop = on_drop
        self._log = log
        self._closed = False
        #: Whether the exit hooks deliver what is queued (``Client(flush_at_exit=...)``).
        self.flush_at_exit = True
        self._dropped_at_shutdown = 0

    def _reset_accounting(self, subscribers: Optional[list[OutcomeSubscriber]]) -> None:
        """(Re)build what this process counts its messages with: ledger, queue, batches in flight."""
        self.ledger = Ledger(
            self._on_error,
            self._log,
            self.delivery.write_key,
            on_drop=self._on_drop,
            monotonic=self.delivery.clock.monotonic,
            credentials=self.credentials,
            observers=self.observers,
            subscribers=subscribers,
        )
        self.queue: MessageQueue = self._queue_factory()
        self.queue.report_losses_to(self.ledger)
        self.in_flight = InFlight(self.queue, self.ledger)
        self.health = DeliveryHealth(self._log, self.delivery.clock)
        self.last_flush: Optional[FlushResult] = None
        self._pause = PipelinePause()
        self._abort = threading.Event()

    @property
    def closed(self) -> bool:
        """True once ``shutdown`` was called: later messages are refused."""
        return self._closed

    def _raise_if_failed(self, data: bytes, error: Optional[SegmentLiteError]) -> None:
        """Count an immediate send's failure (raised to the caller, not reported) and raise it."""
        if error is not None:
            reason = "rejected" if isinstance(error, APIError) else "retries_exhausted"
            status = error.status if isinstance(error, APIError) else None
            self.ledger.drop(reason, error, [data], status=status, report=False)
            raise error

    def _record_flush(self, settled: bool, before: dict[str, Any], call: str = "flush") -> None:
        after = self.ledger.snapshot(0, 0, 0)
        dropped = {
            reason: after["dropped"][reason] - before["dropped"][reason]
            for reason in _ACCEPTED_DROPS
            if after["dropped"][reason] > before["dropped"][reason]
        }
        health = self.health
        last = health.last_rejection if dropped.get("rejected") else health.last_error
        result = FlushResult(
            settled=settled,
            delivered=after["delivered"] - before["delivered"],
            dropped=dropped,
            pending=self.queue.pending_count(),
            last_error=None if last is None else self.ledger.redact(last),
        )
        self.last_flush = result
        if dropped:
            self._log.warning(
                "%s %s with %s dropped and %d delivered; last error: %s (see last_flush and stats())",
                call,
                "settled" if settled else "timed out",
                ", ".join(f"{count} {reason}" for reason, count in dropped.items()),
                result.delivered,
                result.last_error or "none",
            )

    def mark(self) -> int:
        """A marker covering every message accepted so far, for ``wait_settled``."""
        return self.queue.accepted_count()

    def _give_up(self, timeout: Optional[float]) -> int:
        """Shutdown's deadline passed: stop waiting, abort requests, drop what is undelivered."""
        self._abort.set()  # interrupts backoff and Retry-After waits, and stops the workers
        cause = self.health.last_error
        last = f"; last error: {cause}" if cause else ""
        error = ShutdownError(f"shutdown deadline ({timeout}s) passed before delivery{last}")
        # Count what is in flight first (and stop workers taking more), then abort
        # the requests: a sender that sees its request fail finds it counted.
        dropped = self.in_flight.abandon(error)
        self._abort_requests()
        leftover = self.queue.drain()
        if leftover is not None:
            self.ledger.drop("shutdown_timeout", error, leftover.items)
            self.queue.done(leftover)  # only now may a waiting flush wake: the drop is counted
            dropped += len(leftover)
        self._dropped_at_shutdown = dropped
        return dropped

    def _abort_requests(self) -> None:
        """Abort the requests in flight (their messages are counted as dropped already)."""

    def close(self) -> None:
        """Stop without delivering (for clients that never send): refuse messages, release resources."""
        self._closed = True
        self.queue.seal()
        self.ledger.flush_reports()
        self.ledger.stop_observers(OBSERVER_STOP_S)
        self.queue.close()

    def pending(self) -> int:
        """Messages accepted and not yet settled (queued or in flight)."""
        return self.queue.pending_count()

    def stats(self) -> dict[str, Any]:
        """The ledger's counters plus the queue's current size (see ``Client.stats``).

        ``recovered`` counts messages an earlier process left in a durable queue
        (delivered by this one); ``left_in_spool`` those this process leaves there.
        """
        queue = self.queue
        recovered = queue.recovered_count()
        snapshot = self.ledger.snapshot(queue.accepted_count() - recovered, queue.qsize(), queue.nbytes())
        snapshot["recovered"] = recovered
        snapshot["left_in_spool"] = queue.kept_count()
        return snapshot


# Pipelines alive in this process, for the exit flush and the after-fork reset.
_LIVE: weakref.WeakSet[Pipeline] = weakref.WeakSet()
# Pipelines that have started delivering are also held here until they stop, so the
# messages of a client that went out of scope with a queue are flushed at exit.
_STARTED: set[Pipeline] = set()


class Pipeline(PipelineBase):
    """Takes encoded messages and delivers them in the background, accounting for each one.

    ``accept`` queues a message; worker threads start on first use. ``flush``,
    ``wait_settled``, ``join`` and ``shutdown`` are the client's lifecycle calls.
    ``send_now`` delivers on the calling thread (sync mode).
    """

    def __init__(
        self,
        queue_factory: QueueFactory,
        delivery: DeliveryConfig,
        batching: BatchingConfig,
        *,
        on_error: Optional[OnError],
        log: logging.Logger,
        shutdown_timeout_s: Optional[float],
        on_drop: Optional[OnDrop] = None,
        credentials: Optional[Credentials] = None,
        observers: Sequence[Any] = (),
    ) -> None:
        super().__init__(
            queue_factory,
            delivery,
            batching,
            on_error,
            log,
            shutdown_timeout_s,
            on_drop,
            credentials,
            list(observers),
        )
        #: Outcome subscribers (segment_lite.outcomes); the ledger of each process shares this list.
        self.outcome_subscribers: list[OutcomeSubscriber] = []
        self._pid = os.getpid()
        self._reset()
        _LIVE.add(self)
        self._deliver_recovered()

    def _reset(self) -> None:
        """(Re)build everything a process owns: locks, queue, counters, threads (none yet)."""
        # Remember which lock type the queue is built on: if gevent or eventlet
        # monkey-patches threading after this, our real-thread locks and their
        # green threads would deadlock or strand messages (see _start).
        self._lock_type = type(threading.Lock())
        self._reset_accounting(self.outcome_subscribers)
        self._inline_lock = threading.Lock()  # one thread at a time delivers inline
        self._start_lock = threading.Lock()
        self._workers: list[Worker] = []
        self._running = False
        self._inline = False  # no threads could start: deliver on the flushing thread
        self._local = threading.local()  # each thread's sender for sync mode and inline delivery
        self._thread_senders: list[BatchSender] = []

    def _after_fork_in_child(self) -> None:
        # Locks may be held by threads that no longer exist, the queue holds the
        # parent's messages (the parent will send them), and there are no worker
        # threads: start over, lazily, on first use.
        self._pid = os.getpid()
        self.credentials.after_fork()
        self._reset()
        self._deliver_recovered()

    def _deliver_recovered(self) -> None:
        # A durable queue may open with messages an earlier process left behind:
        # deliver them now rather than on this process's first call.
        if self.queue.recovered_count() and not self._closed:
            self._start()

    @property
    def workers(self) -> list[Worker]:
        """The worker threads currently started."""
        return list(self._workers)

    # -- accepting messages -----------------------------------------------------

    def accept(self, data: bytes, block: bool = False, block_timeout_s: Optional[float] = None) -> Accepted:
        """Queue one encoded message, starting the workers on first use."""
        if not self._running and (self._closed or not self._start()):
            return Accepted.CLOSED
        try:
            if self.queue.put(data, block, block_timeout_s):
                return QUEUED
        except SpoolWriteError as exc:
            self.ledger.drop("spool_write_failed", exc, [data])
            return Accepted.FAILED
        # A producer blocked for room when shutdown sealed the queue is refused as after shutdown.
        return Accepted.CLOSED if self._closed else Accepted.FULL

    def send_now(self, data: bytes) -> None:
        """Deliver one message on the calling thread in one attempt (sync mode), or raise why not.

        As segment-analytics-python's sync mode: no retries, no waits; the
        failure (an ``APIError``, or a ``RetriesExhaustedError`` when no answer
        came, both with ``status``, ``code`` and ``message``) is raised to the
        caller instead of reported, and counted in ``stats()``.
        """
        self.ledger.count("accepted_sync")
        self._raise_if_failed(data, self._thread_sender().post_once([data]))

    def change_write_key(self, write_key: str) -> None:
        """Send with ``write_key`` from the next request on (both keys stay masked in logs)."""
        self.delivery = dataclasses.replace(self.delivery, write_key=write_key)
        max_batch_bytes = BatchSender.max_batch_bytes(write_key)
        self.batching = dataclasses.replace(self.batching, max_batch_bytes=max_batch_bytes)
        self.ledger.add_secret(write_key)
        for target in (self._queue_factory, self.queue):  # a spool stores each message's key
            change = getattr(target, "change_write_key", None)
            if change is not None:
                change(write_key)
        with self._start_lock:
            workers = list(self._workers)
            senders = [worker.sender for worker in workers] + list(self._thread_senders)
        for worker in workers:
            worker.max_batch_bytes = max_batch_bytes
        for sender in senders:
            sender.set_write_key(write_key)

    def _new_sender(self) -> BatchSender:
        delivery = self.delivery
        return BatchSender(
            url=delivery.url,
            write_key=delivery.write_key,
            gzip=delivery.gzip,
            timeout=delivery.timeout_s,
            policy=delivery.retry_policy,
            clock=delivery.clock,
            transport_factory=delivery.transport_factory,
            ledger=self.ledger,
            pause=self._pause,
            health=self.health,
            log=self._log,
        )

    def _thread_sender(self) -> BatchSender:
        """This thread's own sender, for sync mode and inline delivery."""
        sender: Optional[BatchSender] = getattr(self._local, "sender", None)
        if sender is None:
            sender = self._local.sender = self._new_sender()
            with self._start_lock:
                self._thread_senders.append(sender)
        return sender

    def _start(self, draining: bool = False) -> bool:
        """Start the worker threads (on first use, and again in a forked child).

        After shutdown they start only to drain what is already queued.
        """
        with self._start_lock:
            if self._running:
                return True
            if self._closed and not draining:
                return False
            if type(threading.Lock()) is not self._lock_type:
                raise SegmentLiteError(
                    "threading was monkey-patched (gevent/eventlet) after this segment_lite Client was "
                    "created; its queue would not work with green threads. Patch first: call "
                    "gevent.monkey.patch_all() (or eventlet.monkey_patch()) before creating the client."
                )
            self._workers = [
                Worker(
                    self.queue,
                    self.in_flight,
                    self._new_sender(),
                    self.batching,
                    self._abort,
                    name=f"segment_lite-consumer-{index}",
                )
                for index in range(self.batching.threads)
            ]
            self._inline = False
            try:
                for worker in self._workers:
                    worker.start()
            except RuntimeError as exc:
                # No new threads: the interpreter is exiting (Python 3.12+ refuses them
                # in atexit handlers) or a thread limit was hit. Queue anyway; flush(),
                # shutdown() and the exit handler deliver on their own thread.
                self._workers = [w for w in self._workers if w.is_alive()]
                self._inline = not self._workers
                self._log.debug("could not start worker threads (%s); delivering on flush", exc)
            self._running = True
            _STARTED.add(self)
        _watch_multiprocessing_exit()
        return True

    def _deliver_inline(self, deadline: Optional[float]) -> None:
        """Send what is queued on the calling thread (when no worker thread could start).

        At ``deadline`` the batch being sent stays unsettled, kept for the next
        flush (or dropped by a shutdown that gives up), never dropped by a flush.
        """
        clock = self.delivery.clock
        wait_s = -1.0 if deadline is None else max(0.0, deadline - clock.monotonic())
        if not self._inline_lock.acquire(timeout=wait_s):
            return
        try:
            sender = self._thread_sender()
            batching = self.batching
            held = iter(self.in_flight.held())  # left unsettled by an earlier flush's deadline
            while True:
                taken = next(held, None) or self.in_flight.take(
                    batching.max_batch_size, batching.max_batch_bytes
                )
                if taken is None:
                    return
                sender.deliver(taken.settlement, self._abort, deadline)
                if not taken.settlement.complete:
                    return  # the deadline came first
                self.in_flight.finish(taken)
        finally:
            self._inline_lock.release()

    # -- lifecycle --------------------------------------------------------------

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Send everything queued now and wait until it is delivered or definitively dropped.

        Returns within ``timeout`` (plus the time to stop a request on the calling
        thread, when no worker thread could start). Records a ``FlushResult`` in
        ``last_flush`` and logs a WARNING when messages were dropped meanwhile.
        """
        started = self.delivery.clock.monotonic()
        before = self.ledger.snapshot(0, 0, 0)
        settled = self._flush(timeout, started)
        self._record_flush(settled, before)
        return settled

    def _flush(self, timeout: Optional[float], started: float) -> bool:
        queue = self.queue
        target = queue.accepted_count()
        if queue.qsize() and not self._running and not self._start(draining=True):
            return False
        queue.request_flush(target)
        if self._inline:
            clock = self.delivery.clock
            self._deliver_inline(None if timeout is None else clock.monotonic() + timeout)
        elapsed = self.delivery.clock.monotonic() - started
        remaining = None if timeout is None else max(0.0, timeout - elapsed)
        settled = queue.wait_settled(target, remaining)
        self.ledger.flush_reports()
        self._log.debug(
            "flush %s; %d message(s) still queued", "complete" if settled else "timed out", queue.qsize()
        )
        return settled

    def wait_settled(self, mark: int, timeout: Optional[float] = None) -> bool:
        """Wait until every message accepted before ``mark`` is settled, without forcing a send."""
        return self.queue.wait_settled(mark, timeout)

    def join(self, timeout: Optional[float] = None) -> bool:
        """Let the workers send what is queued, then stop them; a later message starts them again."""
        clock = self.delivery.clock
        deadline = None if timeout is None else clock.monotonic() + timeout
        with self._start_lock:
            workers, self._workers = self._workers, []
            self._running = False
            _STARTED.discard(self)
        for worker in workers:
            worker.stopping = True
        self.queue.wake.set()
        stopped = True
        for worker in workers:
            remaining = None if deadline is None else max(0.0, deadline - clock.monotonic())
            worker.join(remaining)
            stopped = stopped and not worker.is_alive()
        return stopped

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Deliver what is queued, then stop; later messages are refused.

        Producers blocked for room may still get it while the first flush runs;
        then the queue is sealed (each still waiting, and every later put, is
        refused as ``after_shutdown``) and what got in is flushed too.
        Returns True when everything accepted was settled in time. Otherwise, at
        the deadline, requests still in flight are aborted (their connections
        closed) and everything undelivered, in flight or queued, is dropped as
        ``shutdown_timeout`` and reported with the last error. Either way it
        returns within ``timeout`` plus a fraction of a second.
        """
        self._closed = True
        started = self.delivery.clock.monotonic()
        before = self.ledger.snapshot(0, 0, 0)
        settled = self._flush(timeout, started)
        # Producers blocked for room (on_full="block") may have been let in while the flush
        # ran; from here on every put is refused, and what got in is delivered or dropped too.
        self.queue.seal()
        if settled:
            settled = self._flush(timeout, started)
        if not settled:
            self._give_up(timeout)
        self._record_flush(settled, before, "shutdown")
        self.join(None if settled else WORKER_STOP_GRACE_S)
        self.close()
        return settled

    def _abort_requests(self) -> None:
        """Close the connections of the requests in flight (their messages are counted already)."""
        with self._start_lock:
            senders = [worker.sender for worker in self._workers] + list(self._thread_senders)
        for sender in senders:
            sender.abort()

    def close(self) -> None:
        """Stop without delivering (for clients that never send): refuse messages, release resources."""
        super().close()
        with self._start_lock:
            senders, self._thread_senders = self._thread_senders, []
        for sender in senders:
            sender.close()

    def _shutdown_at_exit(self) -> None:
        if self._pid != os.getpid() or self._closed:
            return
        pending = self.queue.pending_count()
        if not self.flush_at_exit:
            # The program manages this client's lifecycle; say what it leaves behind.
            if pending and not self.queue.durable:
                self._log.warning(
                    "exit: flush_at_exit=False and %d message(s) still queued: they are not delivered "
                    "(call shutdown() before the process ends)",
                    pending,
                )
            return
        if not pending:
            self.close()
            return
        self._log.debug("interpreter exit: delivering %d queued message(s)", pending)
        if not self.shutdown(self.shutdown_timeout_s):
            kept = self.queue.kept_count()
            self._log.warning(
                "exit: shutdown_timeout (%ss) passed; dropped %d undelivered message(s)%s; last error: %s",
                self.shutdown_timeout_s,
                self._dropped_at_shutdown,
                f", left {kept} message(s) in the spool for the next process" if kept else "",
                self.health.last_error or "none (delivery was still in progress)",
            )


def _shutdown_all_at_exit() -> None:
    for pipeline in list(_LIVE):
        try:
            pipeline._shutdown_at_exit()
        except Exception:  # pragma: no cover - never let one pipeline stop the others
            pipeline._log.exception("error while shutting down a client at exit")


def _open_pipelines() -> list[Pipeline]:
    pid = os.getpid()
    return [pipeline for pipeline in list(_LIVE) if not pipeline._closed and pipeline._pid == pid]


def flush_all(timeout: Optional[float]) -> bool:
    """Flush every open pipeline of this process within one ``timeout``; True if all settled."""
    deadline = None if timeout is None else time.monotonic() + timeout
    settled = True
    for pipeline in _open_pipelines():
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        settled = pipeline.flush(remaining) and settled
    return settled


def pending_all() -> int:
    """Messages accepted and not yet settled, over every open pipeline of this process."""
    return sum(pipeline.queue.pending_count() for pipeline in _open_pipelines())


# The exit flush in multiprocessing children. A child of the fork and forkserver start
# methods ends with os._exit(), which skips atexit (and on 3.13 the fork child's atexit
# list is cleared first). Before that, on every version from 3.9, multiprocessing calls
# util._exit_function(), which runs the util.Finalize callbacks registered in the child:
# Process._bootstrap calls it on 3.9-3.12, the atexit list 3.13 rebuilds in the child
# (run before os._exit) on 3.13. Spawn children exit normally and run both; the second
# finds every pipeline closed. _bootstrap clears the finalizers before the target runs,
# so the callback is registered after that: by an after-forker (children forked from a
# process that loaded segment_lite) and when a pipeline starts in a child.

#: Finalizers of priority 0 and up run before a child's own daemon children are
#: terminated; ours runs before the child's pools (15) and queues (10) are finalized.
_MULTIPROCESSING_EXIT_PRIORITY = 20
_multiprocessing_exit: Any = None  # the util.Finalize registered in this process
_multiprocessing_exit_pid = 0
_after_forker_registered = False


def _watch_multiprocessing_exit() -> None:
    """In a multiprocessing child, have multiprocessing's own exit run the exit flush (once)."""
    global _multiprocessing_exit, _multiprocessing_exit_pid
    multiprocessing = sys.modules.get("multiprocessing")
    if multiprocessing is None or multiprocessing.parent_process() is None:
        return  # not a multiprocessing child: atexit runs the exit flush
    pid = os.getpid()
    finalizer = _multiprocessing_exit
    if finalizer is not None and _multiprocessing_exit_pid == pid and finalizer.still_active():
        return
    from multiprocessing import util

    _multiprocessing_exit = util.Finalize(
        None, _shutdown_all_at_exit, exitpriority=_MULTIPROCESSING_EXIT_PRIORITY
    )
    _multiprocessing_exit_pid = pid


def _after_multiprocessing_fork(_: object) -> None:
    _watch_multiprocessing_exit()


def _reset_all_after_fork() -> None:
    global _after_forker_registered
    _STARTED.clear()  # the child has none running; each restarts on first use
    for pipeline in list(_LIVE):
        pipeline._after_fork_in_child()
    util = sys.modules.get("multiprocessing.util")
    if util is not None and not _after_forker_registered:
        # Run by multiprocessing in this child (and, inherited, in its own forked
        # children) once it has cleared the finalizers, before the target runs.
        util.register_after_fork(_after_multiprocessing_fork, _after_multiprocessing_fork)
        _after_forker_registered = True


atexit.register(_shutdown_all_at_exit)
on_fork_in_child("pipelines", _reset_all_after_fork)
