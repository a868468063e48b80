"""The asyncio delivery pipeline: worker tasks on the running loop, wake-ups, awaitable flush and shutdown.

The queue, the in-flight registry, the ledger and the delivery rules are the
threaded pipeline's; only the driver differs. Worker tasks start on the loop
of the first call made inside one (a message tracked before any loop runs, or
from another thread, waits in the queue; a call from another thread wakes the
loop with ``call_soon_threadsafe``). When that loop closes with messages still
queued (``asyncio.run()`` returned without ``shutdown()``), the cancelled worker
delivers them synchronously through the threaded sender, bounded by
``shutdown_timeout``, and logs a WARNING; what is left is dropped as
``shutdown_timeout``. A later call on a new loop starts new tasks there.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import inspect
import logging
import os
import threading
import weakref
from typing import Any, Optional

from segment_lite.after_fork import on_fork_in_child
from segment_lite.async_sender import AsyncBatchSender
from segment_lite.async_transport import AsyncTransportFactory
from segment_lite.batch_core import MAX_BATCH_COUNT, BatchCore
from segment_lite.errors import SegmentLiteError, SpoolWriteError
from segment_lite.ledger import Credentials, OnDrop, OnError
from segment_lite.pipeline import (
    QUEUED,
    WORKER_STOP_GRACE_S,
    Accepted,
    BatchingConfig,
    DeliveryConfig,
    InFlight,
    PipelineBase,
    QueueFactory,
)
from segment_lite.sender import BatchSender

__all__ = ["AsyncPipeline", "flush_all_async"]

# Pipelines alive in this process, for the exit delivery and the after-fork reset.
_LIVE: weakref.WeakSet[AsyncPipeline] = weakref.WeakSet()


class AsyncPipeline(PipelineBase):
    """Takes encoded messages and delivers them from asyncio tasks, accounting for each one."""

    def __init__(
        self,
        queue_factory: QueueFactory,
        delivery: DeliveryConfig,
        batching: BatchingConfig,
        transport_factory: AsyncTransportFactory,
        *,
        on_error: Optional[OnError],
        log: logging.Logger,
        shutdown_timeout_s: Optional[float],
        on_drop: Optional[OnDrop] = None,
        credentials: Optional[Credentials] = None,
        observers: Optional[list[Any]] = None,
    ) -> None:
        observers = [] if observers is None else observers  # shared: AsyncClient adds to Client's list
        super().__init__(
            queue_factory,
            delivery,
            batching,
            on_error,
            log,
            shutdown_timeout_s,
            on_drop,
            credentials,
            observers,
        )
        self.transport_factory = transport_factory
        #: For immediate sends, which may run concurrently (the default transport opens more connections).
        self.immediate_transport_factory: Any = transport_factory
        #: The threaded transport for delivering what a closed loop left (see the module's docstring).
        self.salvage_transport_factory: Any = None
        self.upload_size = max(1, min(batching.upload_size, MAX_BATCH_COUNT))
        self.max_batch_size = max(self.upload_size, min(batching.max_batch_size, MAX_BATCH_COUNT))
        self._reset()
        _LIVE.add(self)

    def _reset(self) -> None:
        """(Re)build everything a process owns: queue, counters, no tasks, no loop."""
        self._pid = os.getpid()
        self._reset_accounting(None)
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._loop_thread = 0
        self._wake: Optional[asyncio.Event] = None
        self._settled: Optional[asyncio.Event] = None
        self._tasks: list[asyncio.Task[None]] = []
        self._senders: list[AsyncBatchSender] = []
        self._immediate: Optional[AsyncBatchSender] = None
        self._spare_transports: list[Any] = []
        self._stopping = False
        self._wake_pending = False
        self._dropped_at_shutdown = 0

    # -- the loop ----------------------------------------------------------------

    def _new_sender(self, transport_factory: Any, cls: Any = AsyncBatchSender) -> Any:
        delivery = self.delivery
        core: dict[str, Any] = {
            "url": delivery.url,
            "write_key": delivery.write_key,
            "gzip": delivery.gzip,
            "timeout": delivery.timeout_s,
            "policy": delivery.retry_policy,
            "clock": delivery.clock,
            "ledger": self.ledger,
            "pause": self._pause,
            "health": self.health,
            "log": self._log,
        }
        if cls is AsyncBatchSender:
            core["abort"] = self._abort
        return cls(transport_factory=transport_factory, **core)

    def prepare_transports(self) -> None:
        """Make the delivery tasks' transports now (off the loop), for their first requests."""
        self._spare_transports = [self.transport_factory() for _ in range(self.batching.threads)]

    def _bound_loop(self) -> Optional[asyncio.AbstractEventLoop]:
        """The loop the worker tasks run on, starting them on the running loop if there are none.

        Returns None when no loop runs in this thread and none has tasks.
        """
        loop = self._loop
        if loop is not None and not loop.is_closed() and self._tasks:
            return loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return None
        self._start(running)
        return running

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        self._settled = asyncio.Event()
        self._stopping = False
        self._senders = [self._new_sender(self._spare_factory) for _ in range(self.batching.threads)]
        self._tasks = [
            loop.create_task(self._work(sender), name=f"segment_lite-consumer-{index}")
            for index, sender in enumerate(self._senders)
        ]
        if self.queue.qsize():
            self._wake.set()

    def _spare_factory(self) -> Any:
        """A transport made ahead of time when one is left, else a new one."""
        return self._spare_transports.pop() if self._spare_transports else self.transport_factory()

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        """The loop for an awaited call: the running one, which must be the one the tasks run on."""
        loop = self._bound_loop()
        running = asyncio.get_running_loop()
        if loop is not running:
            raise SegmentLiteError(
                "this AsyncClient delivers on another event loop (in another thread); await its "
                "flush(), shutdown() and immediate sends on that loop"
            )
        return running

    def _notify(self) -> None:
        """Wake a worker task: directly on the loop's thread, thread-safely from another."""
        if self._loop_thread == threading.get_ident() and self._wake is not None:
            self._wake.set()
            return
        loop = self._bound_loop()
        if loop is None or self._wake is None:
            return  # no loop yet: the first call on one starts the tasks, which find the queue
        if self._loop_thread == threading.get_ident():
            self._wake.set()
        elif loop.is_running() and not self._wake_pending:
            self._wake_pending = True  # one wake-up in flight at a time, not one per message
            try:
                loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # closed meanwhile: exit delivers the queue
                pass

    # -- accepting messages ------------------------------------------------------

    def accept(self, data: bytes, block: bool = False, block_timeout_s: Optional[float] = None) -> Accepted:
        """Queue one encoded message (never waiting for room: that would block the loop)."""
        if self._closed:
            return Accepted.CLOSED
        queue = self.queue
        try:
            if not queue.put(data):
                return Accepted.CLOSED if self._closed else Accepted.FULL
        except SpoolWriteError as exc:
            self.ledger.drop("spool_write_failed", exc, [data])
            return Accepted.FAILED
        if self._loop_thread == threading.get_ident() and self._tasks:
            if queue.wake.is_set():
                self._wake.set()  # type: ignore[union-attr]
        elif queue.wake.is_set() or not self._tasks:
            self._notify()  # another thread, or no tasks yet
        return QUEUED

    async def send_now(self, data: bytes) -> None:
        """Deliver one message now, in one attempt, or raise why not (``APIError``, ...)."""
        self._require_loop()
        self.ledger.count("accepted_sync")
        sender = self._immediate
        if sender is None:
            sender = self._immediate = self._new_sender(self.immediate_transport_factory)
        self._raise_if_failed(data, await sender.post_once([data]))

    def change_write_key(self, write_key: str) -> None:
        """Send with ``write_key`` from the next request on."""
        self.delivery = dataclasses.replace(self.delivery, write_key=write_key)
        self.batching = dataclasses.replace(
            self.batching, max_batch_bytes=BatchCore.max_batch_bytes(write_key)
        )
        self.ledger.add_secret(write_key)
        for sender in [*self._senders, *([self._immediate] if self._immediate else [])]:
            sender.set_write_key(write_key)

    # -- the worker task ---------------------------------------------------------

    async def _work(self, sender: AsyncBatchSender) -> None:
        queue, in_flight = self.queue, self.in_flight
        wake, settled = self._wake, self._settled
        assert wake is not None and settled is not None
        interval = self.batching.upload_interval_s
        due = False
        try:
            loop = asyncio.get_running_loop()
            while not self._abort.is_set():
                if not due:
                    # Woken early by a full batch, a flush or a stop; a stale wake-up (its
                    # messages already went out in the last batch) waits on for the interval.
                    ends = loop.time() + interval
                    while not queue.wake.is_set() and not self._stopping:
                        remaining = ends - loop.time()
                        if remaining <= 0:
                            break
                        try:
                            await asyncio.wait_for(wake.wait(), remaining)
                        except asyncio.TimeoutError:
                            break
                        wake.clear()
                        self._wake_pending = False
                        if queue.send_due(self.upload_size):
                            break
                wake.clear()
                self._wake_pending = False
                queue.wake.clear()
                backlog = queue.qsize()
                count = self.upload_size if backlog <= self.upload_size else min(backlog, self.max_batch_size)
                taken = in_flight.take(count, self.batching.max_batch_bytes)
                if taken is None:
                    if self._stopping:
                        wake.set()  # siblings share this event: pass the wake-up on
                        return
                    due = False
                    continue
                try:
                    await sender.deliver(taken.settlement)
                finally:
                    if taken.settlement.complete:  # else cancelled mid-delivery: held for salvage
                        in_flight.finish(taken)
                    settled.set()
                ledger = self.ledger
                ledger.deliver_due_reports()
                if ledger.observers and queue.qsize() == 0 and in_flight.empty():
                    ledger.drained()
                due = self._stopping or queue.send_due(self.upload_size)
        except asyncio.CancelledError:
            if not self._closed and not self._abort.is_set():
                # Cancelled while open: the loop is closing (asyncio.run() returned without
                # shutdown()). No task of ours will run again on it: deliver on this thread.
                self._tasks = []
                self._salvage("the event loop closed without AsyncClient.shutdown()")
            raise
        finally:
            try:
                await sender.aclose()
            except BaseException:  # closing on a loop being torn down: nothing to lose
                pass

    def _salvage(self, why: str) -> None:
        """Deliver what is queued or held synchronously with the threaded sender, within shutdown_timeout.

        What is left at the deadline is dropped as ``shutdown_timeout`` (counted, reported).
        """
        pending = self.queue.pending_count()
        if not pending or self._pid != os.getpid():
            return
        self._log.warning(
            "%s with %d message(s) queued: delivering them synchronously (await client.shutdown() "
            "before the loop ends to avoid this)",
            why,
            pending,
        )
        from segment_lite.transport import Urllib3Transport

        factory = self.salvage_transport_factory or Urllib3Transport
        if inspect.iscoroutinefunction(getattr(factory(), "post", None)):
            factory = Urllib3Transport  # an asyncio transport cannot run here
        clock = self.delivery.clock
        timeout = self.shutdown_timeout_s
        deadline = None if timeout is None else clock.monotonic() + timeout
        sender: BatchSender = self._new_sender(factory, BatchSender)
        try:
            held = iter(self.in_flight.held())
            while deadline is None or clock.monotonic() < deadline:
                taken = next(held, None) or self.in_flight.take(
                    self.max_batch_size, self.batching.max_batch_bytes
                )
                if taken is None:
                    break
                sender.deliver(taken.settlement, self._abort, deadline)
                if not taken.settlement.complete:
                    break  # the deadline came first
                self.in_flight.finish(taken)
        finally:
            sender.close()
        if self.queue.pending_count():
            dropped = self._give_up(timeout)
            self._log.warning("%s: dropped %d undelivered message(s) as shutdown_timeout", why, dropped)
            self._abort.clear()  # a later loop may start delivering again
            self.in_flight = InFlight(self.queue, self.ledger)
        self.ledger.flush_reports()

    # -- lifecycle ---------------------------------------------------------------

    async def flush(self, timeout: Optional[float] = None) -> bool:
        """Send everything queued now; wait, without blocking the loop, until it is settled or ``timeout``."""
        loop = self._require_loop()
        before = self.ledger.snapshot(0, 0, 0)
        settled = await self._flush(None if timeout is None else loop.time() + timeout)
        self._record_flush(settled, before)
        return settled

    async def _flush(self, deadline: Optional[float]) -> bool:
        self._require_loop()
        target = self.queue.accepted_count()
        self.queue.request_flush(target)
        if self._wake is not None:
            self._wake.set()
        return await self._wait_settled(target, deadline)

    async def wait_settled(self, mark: int, timeout: Optional[float] = None) -> bool:
        """Wait until every message accepted before ``mark`` is settled, without forcing a send."""
        loop = self._require_loop()
        return await self._wait_settled(mark, None if timeout is None else loop.time() + timeout)

    async def _wait_settled(self, target: int, deadline: Optional[float]) -> bool:
        loop = self._require_loop()
        queue, settled_event = self.queue, self._settled
        assert settled_event is not None
        while True:
            settled_event.clear()
            if queue.wait_settled(target, 0):
                break
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            try:
                await asyncio.wait_for(settled_event.wait(), remaining)
            except asyncio.TimeoutError:
                pass
        self.ledger.flush_reports()
        return True

    async def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Deliver what is queued, then stop; at the deadline cancel requests in flight and drop the rest.

        Returns True when everything accepted was settled in time; either way
        every message is delivered or counted as dropped with a reason.
        """
        loop = self._require_loop()  # before closing: on a wrong loop nothing changes
        self._closed = True
        deadline = None if timeout is None else loop.time() + timeout
        before = self.ledger.snapshot(0, 0, 0)
        settled = await self._flush(deadline)
        self.queue.seal()
        if settled:
            settled = await self._flush(deadline)
        if not settled:
            self._give_up(timeout)
        self._record_flush(settled, before, "shutdown")
        await self._stop_tasks(None if settled else WORKER_STOP_GRACE_S)
        immediate, self._immediate = self._immediate, None
        if immediate is not None:
            await immediate.aclose()
        self.close()
        return settled

    async def _stop_tasks(self, grace: Optional[float]) -> None:
        tasks, self._tasks = self._tasks, []
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        if tasks:
            _, running = await asyncio.wait(tasks, timeout=grace)
            for task in running:
                task.cancel()
            if running:
                await asyncio.wait(running, timeout=WORKER_STOP_GRACE_S)

    def _give_up(self, timeout: Optional[float]) -> int:
        """The deadline passed: drop what is undelivered (counted first), then cancel requests in flight."""
        dropped = super()._give_up(timeout)
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            if task is not _current_task():
                task.cancel()  # requests in flight are cancelled; their messages are counted above
        return dropped

    def _deliver_at_exit(self) -> None:
        if self._closed or self._pid != os.getpid():
            return
        if not self.flush_at_exit:
            pending = self.queue.pending_count()
            if pending:
                self._log.warning(
                    "exit: flush_at_exit=False and %d message(s) of an AsyncClient still queued: they are "
                    "not delivered (await shutdown() before the process ends)",
                    pending,
                )
            return
        self._salvage("interpreter exit")
        self.close()


async def flush_all_async(timeout: Optional[float], pipelines: Optional[list[Any]] = None) -> bool:
    """Flush ``pipelines`` (default: every open one of this process that can deliver on the running loop).

    Within one ``timeout``; True if all settled.
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    if pipelines is None:
        pid = os.getpid()
        pipelines = [
            pipeline
            for pipeline in list(_LIVE)
            if not pipeline.closed
            and pipeline._pid == pid
            and pipeline.queue.pending_count()
            and (pipeline._loop is None or pipeline._loop is loop or pipeline._loop.is_closed())
        ]
    settled = True
    for pipeline in pipelines:
        remaining = None if deadline is None else max(0.0, deadline - loop.time())
        settled = await pipeline.flush(remaining) and settled
    return settled


def _current_task() -> Optional[asyncio.Task[Any]]:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def _deliver_all_at_exit() -> None:
    for pipeline in list(_LIVE):
        try:
            pipeline._deliver_at_exit()
        except Exception:  # pragma: no cover - never let one pipeline stop the others
            pipeline._log.exception("error while delivering an AsyncClient's messages at exit")


def _reset_all_after_fork() -> None:
    # The child has no loop running the parent's tasks, and the queue's messages are
    # the parent's to send: start over, empty, on the child's first call in a loop.
    for pipeline in list(_LIVE):
        pipeline._reset()


atexit.register(_deliver_all_at_exit)
on_fork_in_child("async_pipelines", _reset_all_after_fork)
