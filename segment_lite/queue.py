"""The bounded queue between callers and consumers, with the bookkeeping flush() waits on."""

from __future__ import annotations

import collections
import threading
import time
from typing import Optional, Protocol

__all__ = ["Batch", "MemoryQueue", "MessageQueue"]


class Batch:
    """Encoded messages taken from the queue together, plus their place in the sequence."""

    __slots__ = ("items", "nbytes", "seq")

    def __init__(self, seq: int, items: list[bytes], nbytes: int) -> None:
        self.seq = seq  # sequence number of the first item: items are seq .. seq+len-1
        self.items = items
        self.nbytes = nbytes

    def __len__(self) -> int:
        return len(self.items)


class MessageQueue(Protocol):
    """What the client and its consumers need from a queue.

    A queue hands out batches in acceptance order and learns when each one is
    settled (delivered or dropped), so ``wait_settled`` can tell a flush that
    everything accepted before it has been dealt with. A disk-backed spool can
    implement the same protocol.
    """

    wake: threading.Event

    def put(self, item: bytes, block: bool = False, timeout: Optional[float] = None) -> bool: ...
    def take(self, max_count: int, max_bytes: int) -> Optional[Batch]: ...
    def done(self, batch: Batch) -> None: ...
    def drain(self) -> list[bytes]: ...
    def qsize(self) -> int: ...
    def nbytes(self) -> int: ...
    def accepted_count(self) -> int: ...
    def wait_settled(self, target: int, timeout: Optional[float]) -> bool: ...


class MemoryQueue:
    """A bounded in-memory FIFO of encoded messages, bounded by count and by bytes.

    One lock guards a ``collections.deque``; ``put`` is a few attribute updates
    under it. ``wake`` is set when ``wake_at`` items are waiting, so a consumer
    sends a full batch at once instead of waiting out its interval.
    """

    def __init__(self, max_count: int, max_bytes: int, wake_at: int) -> None:
        self.max_count = max(1, int(max_count))
        self.max_bytes = max(1, int(max_bytes))
        self.wake_at = max(1, int(wake_at))
        self.wake = threading.Event()
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._settled = threading.Condition(self._lock)
        self._items: collections.deque[bytes] = collections.deque()
        self._bytes = 0
        self._accepted = 0  # items ever put; the sequence number of the next one
        self._taken = 0  # items ever taken or drained
        self._in_flight: dict[int, int] = {}  # batch seq -> size, for batches not yet settled
        self._blocked = 0  # producers waiting for room

    def put(self, item: bytes, block: bool = False, timeout: Optional[float] = None) -> bool:
        """Append ``item``; False when there is no room (after waiting up to ``timeout`` if ``block``)."""
        size = len(item)
        with self._lock:
            if len(self._items) >= self.max_count or self._bytes + size > self.max_bytes:
                if not block or not self._wait_for_room(size, timeout):
                    return False
            self._items.append(item)
            self._bytes += size
            self._accepted += 1
            wake = len(self._items) >= self.wake_at
        if wake and not self.wake.is_set():
            self.wake.set()
        return True

    def _wait_for_room(self, size: int, timeout: Optional[float]) -> bool:
        # A message bigger than the whole byte budget can never fit; waiting would hang.
        if size > self.max_bytes:
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        self._blocked += 1
        try:
            while len(self._items) >= self.max_count or self._bytes + size > self.max_bytes:
                self.wake.set()  # the queue is full: make sure a consumer is draining it
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._not_full.wait(remaining)
            return True
        finally:
            self._blocked -= 1

    def take(self, max_count: int, max_bytes: int) -> Optional[Batch]:
        """Take up to ``max_count`` items totalling at most ``max_bytes`` (at least one item)."""
        with self._lock:
            items = self._items
            if not items:
                return None
            taken: list[bytes] = []
            total = 0
            while items and len(taken) < max_count:
                size = len(items[0]) + 1  # +1 for the comma that joins them
                if taken and total + size > max_bytes:
                    break
                taken.append(items.popleft())
                total += size
            self._bytes -= total - len(taken)
            batch = Batch(self._taken, taken, total)
            self._taken += len(taken)
            self._in_flight[batch.seq] = len(taken)
            if self._blocked:
                self._not_full.notify_all()
            return batch

    def done(self, batch: Batch) -> None:
        """Mark ``batch`` settled: delivered or dropped, either way no longer pending."""
        with self._lock:
            self._in_flight.pop(batch.seq, None)
            self._settled.notify_all()

    def drain(self) -> list[bytes]:
        """Remove and return everything still queued (used when giving up at shutdown)."""
        with self._lock:
            drained = list(self._items)
            self._items.clear()
            self._bytes = 0
            self._taken += len(drained)
            self._settled.notify_all()
            if self._blocked:
                self._not_full.notify_all()
            return drained

    def qsize(self) -> int:
        """Items waiting to be taken."""
        return len(self._items)

    def nbytes(self) -> int:
        """Encoded bytes waiting to be taken."""
        return self._bytes

    def accepted_count(self) -> int:
        """Items ever accepted; a flush waits until all of these are settled."""
        return self._accepted

    def pending_count(self) -> int:
        """Items accepted but not yet settled (queued or in flight)."""
        with self._lock:
            return len(self._items) + sum(self._in_flight.values())

    def _is_settled(self, target: int) -> bool:
        return self._taken >= target and all(seq >= target for seq in self._in_flight)

    def wait_settled(self, target: int, timeout: Optional[float]) -> bool:
        """Wait until every item with sequence number below ``target`` is settled."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not self._is_settled(target):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._settled.wait(remaining)
            return True
