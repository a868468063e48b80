"""The queue protocol, and the bounded in-memory queue with the bookkeeping flush() waits on."""

from __future__ import annotations

import array
import collections
import itertools
import sys
import threading
import time
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Optional, Protocol, Union

if TYPE_CHECKING:
    from segment_lite.ledger import Ledger

__all__ = ["PACK_COUNT", "STALL_S", "Batch", "MemoryQueue", "MessageQueue", "NumberedQueue"]

#: A backlog past twice this many messages is kept in blocks of this many: joined
#: into one bytes object (about 5 bytes of bookkeeping per message instead of the
#: 41 of a bytes object in a deque), and compressed as well while delivery is stalled.
PACK_COUNT = 128
#: Delivery is stalled when a batch has been out (sending, retrying, waiting out a
#: Retry-After) this long; a healthy server answers in milliseconds.
STALL_S = 1.0


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
    """What the pipeline needs from a queue; the memory queue and the disk spool implement it.

    A queue hands out batches in acceptance order and learns when each one is
    settled (delivered or dropped), so ``wait_settled`` can tell a flush that
    everything accepted before it has been dealt with. Sequence numbers count
    accepted messages from 0 in this process.
    """

    #: Set when a worker should look at the queue now (a batch is full, a flush
    #: or blocked producers are waiting); workers clear it before taking.
    wake: threading.Event
    #: True when the queue keeps undelivered messages for a later process (the
    #: disk spool): what shutdown cuts short is then kept, not dropped.
    durable: bool
    #: The most messages it holds, 0 for no limit on the count (as in ``queue.Queue``).
    maxsize: int

    def put(self, item: bytes, block: bool = False, timeout: Optional[float] = None) -> bool:
        """Append an encoded message; False when there is no room (after waiting up to ``timeout``)."""
        ...

    def take(self, max_count: int, max_bytes: int) -> Optional[Batch]:
        """The next batch (at least one message when any is queued), or None when empty."""
        ...

    def done(self, batch: Batch, keep: bool = False) -> None:
        """Mark a taken batch settled: delivered or dropped, either way no longer pending.

        ``keep``: the batch was cut short undelivered (by shutdown or a deadline)
        and not counted as dropped, because the queue is ``durable``: it is taken
        again later, or left for the next process once the queue is draining.
        """
        ...

    def request_flush(self, target: int) -> None:
        """Have workers send everything accepted before ``target`` now, full batch or not."""
        ...

    def send_due(self, batch_size: int) -> bool:
        """Whether a worker should take a batch now rather than wait for one to fill."""
        ...

    def seal(self) -> None:
        """Refuse every later ``put`` (it returns False), and wake producers blocked for room to refuse them.

        Called by shutdown once it stops letting messages in: what is queued
        stays, to be delivered or drained; nothing can join it afterwards.
        """
        ...

    def drain(self) -> Optional[Batch]:
        """Take what is still queued as one batch, or None when nothing is lost.

        Used when shutdown gives up: the caller counts the batch's messages as
        dropped, then calls ``done``, so a flush waiting on them wakes only once
        they are counted. A durable queue keeps its records for the next process
        and returns only what it cannot keep.
        """
        ...

    def qsize(self) -> int:
        """Messages waiting to be taken."""
        ...

    def nbytes(self) -> int:
        """Encoded bytes waiting to be taken."""
        ...

    def accepted_count(self) -> int:
        """Messages ever accepted in this process; also the sequence number of the next one."""
        ...

    def pending_count(self) -> int:
        """Messages accepted and not yet settled (queued or in flight)."""
        ...

    def wait_settled(self, target: int, timeout: Optional[float]) -> bool:
        """Wait until every message with a sequence number below ``target`` is settled."""
        ...

    def recovered_count(self) -> int:
        """Messages an earlier process left in the queue, found when it was opened.

        They are numbered first: ``accepted_count()`` includes them.
        """
        ...

    def kept_count(self) -> int:
        """Messages left undelivered in the queue for a later process, once it is draining or closed."""
        ...

    def report_losses_to(self, ledger: Ledger) -> None:
        """Count and report in ``ledger`` the messages the queue itself loses (unreadable records)."""
        ...

    def close(self) -> None:
        """Release what the queue holds (files, locks) once the pipeline has stopped."""
        ...

    # The reads of queue.Queue that code written for segment-analytics-python
    # calls on ``client.queue`` (``NumberedQueue`` implements them from the above).

    def empty(self) -> bool:
        """True when no message is waiting."""
        ...

    def full(self) -> bool:
        """True when ``maxsize`` messages are waiting."""
        ...

    def join(self) -> None:
        """Have everything accepted sent now, and wait until all of it is delivered or dropped."""
        ...


class NumberedQueue:
    """What both queues share: flush and settle bookkeeping over numbered messages, and ``queue.Queue`` reads.

    Messages are numbered in acceptance order; a batch taken from the queue is
    out (``_in_flight``, keyed by the number of its first message) until
    ``done``. A subclass sets, under one ``_lock``: ``_taken`` (how many were
    ever taken), ``_flush_target``, ``_in_flight`` and the ``_settled``
    condition on ``_lock``, notified whenever a batch is settled; and ``wake``.

    ``empty``, ``full`` and ``join`` answer as segment-analytics-python's
    ``client.queue`` (a ``queue.Queue``) does; ``join`` waits for every
    accepted message to be settled, as ``queue.Queue.join`` waits for every
    task to be done (and, like it, waits as long as that takes).
    """

    maxsize = 0
    wake: threading.Event
    _lock: threading.Lock
    _settled: threading.Condition
    _taken: int
    _flush_target: int
    _in_flight: Mapping[int, object]

    def qsize(self) -> int:  # pragma: no cover - the queue's own
        raise NotImplementedError

    def accepted_count(self) -> int:  # pragma: no cover - the queue's own
        raise NotImplementedError

    def request_flush(self, target: int) -> None:
        """Have workers send everything accepted before ``target`` now, full batch or not."""
        with self._lock:
            if target > self._flush_target:
                self._flush_target = target
        self.wake.set()

    def _is_settled(self, target: int) -> bool:
        return self._taken >= target and all(seq >= target for seq in self._in_flight)

    def wait_settled(self, target: int, timeout: Optional[float]) -> bool:
        """Wait until every message numbered below ``target`` is settled."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not self._is_settled(target):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._settled.wait(remaining)
            return True

    def empty(self) -> bool:
        """True when no message is waiting."""
        return self.qsize() == 0

    def full(self) -> bool:
        """True when ``maxsize`` messages are waiting (a byte bound may refuse one before that)."""
        return 0 < self.maxsize <= self.qsize()

    def join(self) -> None:
        """Have everything accepted sent now, and wait until all of it is delivered or dropped."""
        target = self.accepted_count()
        self.request_flush(target)
        self.wait_settled(target, None)


class _Packed:
    """``PACK_COUNT`` consecutive messages of a backlog, kept as one block.

    A batch with room for only the first of them takes those and leaves the
    others at the head of the queue as a smaller block (``split``).

    The messages are joined into one bytes object with their sizes beside it, so
    a long backlog costs about 5 bytes of bookkeeping per message rather than 41.
    While delivery is stalled the block is also compressed: queued JSON events
    share most of their text, so zlib at level 1 keeps them in about a twentieth
    of the space for about 1.5 us per message. Either way they are given back
    byte for byte when a worker takes them.
    """

    __slots__ = ("blob", "compressed", "sizes")

    def __init__(self, items: list[bytes], compress: bool) -> None:
        sizes = [len(item) for item in items]
        # Messages are at most 32 KB, so two bytes a size is the rule; four if a bigger one came.
        self.sizes = array.array("H" if max(sizes) <= 0xFFFF else "I", sizes)
        joined = b"".join(items)
        self.compressed = compress
        self.blob = zlib.compress(joined, 1) if compress else joined

    def __len__(self) -> int:
        return len(self.sizes)

    def unpack(self) -> list[bytes]:
        """The messages, in order."""
        return self.split(len(self.sizes))[0]

    def split(self, count: int) -> tuple[list[bytes], Optional[_Packed]]:
        """The first ``count`` messages, and a block of the others (kept uncompressed), if any."""
        data = zlib.decompress(self.blob) if self.compressed else self.blob
        sizes = self.sizes
        ends = list(itertools.accumulate(sizes[:count]))
        first = [data[start:end] for start, end in zip([0, *ends], ends)]
        if count >= len(sizes):
            return first, None
        rest = _Packed.__new__(_Packed)  # made from the parts at hand: no join of the messages again
        rest.sizes = sizes[count:]
        rest.blob = data[ends[-1] if ends else 0 :]
        rest.compressed = False
        return first, rest


class MemoryQueue(NumberedQueue):
    """A bounded in-memory FIFO of encoded messages, bounded by count and by bytes.

    One lock guards a ``collections.deque``; ``put`` is a few attribute updates
    under it. ``wake`` is set when ``wake_at`` items are waiting, so a worker
    sends a full batch at once instead of waiting out its interval.

    A backlog of more than ``2 * PACK_COUNT`` messages keeps its newest ones in
    blocks of ``PACK_COUNT`` (``_Packed``), joined into one bytes object, which
    saves about 36 bytes per queued message. While delivery is stalled (a batch
    out for more than ``STALL_S``: the server is down or very slow), the blocks
    are compressed too, so an outage holds a fraction of the memory; a healthy
    pipeline never compresses. Counts and byte budgets are always of the encoded
    messages.
    """

    durable = False

    def __init__(self, max_count: int, max_bytes: int, wake_at: int) -> None:
        # As in queue.Queue, a max_count of 0 (or less) means no limit on the count.
        self.maxsize = max(0, int(max_count))
        self.max_count = self.maxsize or sys.maxsize
        self.max_bytes = max(1, int(max_bytes))
        self.wake_at = max(1, int(wake_at))
        self.wake = threading.Event()
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._settled = threading.Condition(self._lock)
        self._items: collections.deque[Union[bytes, _Packed]] = collections.deque()
        self._count = 0  # messages queued (a packed entry holds PACK_COUNT of them)
        self._bytes = 0
        self._accepted = 0  # items ever put; the sequence number of the next one
        self._taken = 0  # items ever taken or drained
        self._in_flight: dict[int, tuple[int, float]] = {}  # batch seq -> (size, taken at), not yet settled
        self._blocked = 0  # producers waiting for room
        self._flush_target = 0  # send at once, not in full batches, until this many are taken
        self._unpacked_puts = 0  # puts since the newest messages were last considered for packing
        self._sealed = False  # set by seal(): every later put is refused

    def put(self, item: bytes, block: bool = False, timeout: Optional[float] = None) -> bool:
        """Append ``item``; False when there is no room (after waiting up to ``timeout`` if ``block``)."""
        size = len(item)
        with self._lock:
            if self._count >= self.max_count or self._bytes + size > self.max_bytes or self._sealed:
                if self._sealed or not block or not self._wait_for_room(size, timeout):
                    return False
            self._items.append(item)
            count = self._count = self._count + 1
            self._bytes += size
            self._accepted += 1
            self._unpacked_puts += 1
            if self._unpacked_puts >= PACK_COUNT:
                self._unpacked_puts = 0
                # Keep the head raw for the next take; the newest PACK_COUNT entries
                # are then all raw (nothing is removed from the right).
                if count >= 2 * PACK_COUNT:
                    self._pack_newest(self._delivery_stalled())
        if count >= self.wake_at and not self.wake.is_set():
            self.wake.set()
        return True

    def _delivery_stalled(self) -> bool:
        if not self._in_flight:
            return False
        oldest = min(taken_at for _, taken_at in self._in_flight.values())
        return time.monotonic() - oldest > STALL_S

    def _pack_newest(self, compress: bool) -> None:
        items = self._items
        newest = [items.pop() for _ in range(PACK_COUNT)]
        newest.reverse()
        items.append(_Packed(newest, compress))  # type: ignore[arg-type]  # all raw: see put()

    def _wait_for_room(self, size: int, timeout: Optional[float]) -> bool:
        # A message bigger than the whole byte budget can never fit; waiting would hang.
        if size > self.max_bytes:
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        self._blocked += 1
        try:
            while self._count >= self.max_count or self._bytes + size > self.max_bytes:
                if self._sealed:  # shutdown stopped letting messages in while this one waited
                    return False
                self.wake.set()  # the queue is full: make sure a worker is draining it
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._not_full.wait(remaining)
            return not self._sealed  # room was made by the shutdown's drain: refused all the same
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
                head = items[0]
                if type(head) is _Packed:
                    items.popleft()
                    block, rest = head.split(max_count - len(taken))
                    if rest is not None:  # what this batch has no room for stays packed at the head
                        items.appendleft(rest)
                    size = sum(map(len, block)) + len(block)  # +1 each for the comma that joins them
                    if total + size <= max_bytes:
                        # The usual case, a backlog of small messages: as many as the batch has room
                        # for in one go (what the loop below would take, one at a time).
                        taken += block
                        total += size
                    else:  # the byte budget ends inside the block: one message at a time
                        items.extendleft(reversed(block))
                    continue
                size = len(head) + 1  # +1 for the comma that joins them
                if taken and total + size > max_bytes:
                    break
                taken.append(items.popleft())  # type: ignore[arg-type]  # raw: checked above
                total += size
            self._count -= len(taken)
            self._bytes -= total - len(taken)
            batch = Batch(self._taken, taken, total)
            self._taken += len(taken)
            self._in_flight[batch.seq] = (len(taken), time.monotonic())
            if self._blocked:
                self._not_full.notify_all()
            return batch

    def send_due(self, batch_size: int) -> bool:
        """Whether a worker should take a batch now rather than wait for one to fill.

        True when ``batch_size`` messages are waiting, a flush is pending, or
        producers are blocked for room.
        """
        return self._count >= batch_size or self._taken < self._flush_target or self._blocked > 0

    def done(self, batch: Batch, keep: bool = False) -> None:
        """Mark ``batch`` settled: delivered or dropped (never kept: this queue is not durable)."""
        with self._lock:
            self._in_flight.pop(batch.seq, None)
            self._settled.notify_all()

    def seal(self) -> None:
        """Refuse every later ``put``; producers blocked for room wake and are refused."""
        with self._lock:
            self._sealed = True
            self._not_full.notify_all()

    def drain(self) -> Optional[Batch]:
        """Take everything still queued as one batch in flight (used when giving up at shutdown).

        The messages stay pending until ``done(batch)``: a flush waiting on them
        must not wake before the caller has counted them as dropped.
        """
        with self._lock:
            drained: list[bytes] = []
            for entry in self._items:
                if type(entry) is _Packed:
                    drained.extend(entry.unpack())
                else:
                    drained.append(entry)  # type: ignore[arg-type]
            if not drained:
                return None
            self._items.clear()
            batch = Batch(self._taken, drained, self._bytes + len(drained))
            self._count = 0
            self._bytes = 0
            self._taken += len(drained)
            self._in_flight[batch.seq] = (len(drained), time.monotonic())
            if self._blocked:
                self._not_full.notify_all()
            return batch

    def qsize(self) -> int:
        """Items waiting to be taken."""
        return self._count

    def nbytes(self) -> int:
        """Encoded bytes waiting to be taken."""
        return self._bytes

    def accepted_count(self) -> int:
        """Items ever accepted; a flush waits until all of these are settled."""
        return self._accepted

    def pending_count(self) -> int:
        """Items accepted but not yet settled (queued or in flight)."""
        with self._lock:
            return self._count + sum(size for size, _ in self._in_flight.values())

    def recovered_count(self) -> int:
        """Always 0: nothing outlives a process in memory."""
        return 0

    def kept_count(self) -> int:
        """Always 0: what shutdown cannot deliver is dropped and counted, not kept."""
        return 0

    def report_losses_to(self, ledger: Ledger) -> None:
        """Nothing to report: the memory queue never loses a message on its own."""

    def close(self) -> None:
        """Nothing to release: the queue lives in memory."""
