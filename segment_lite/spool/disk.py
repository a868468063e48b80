"""The disk spool: a ``MessageQueue`` whose accepted messages survive crashes, kills and restarts."""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from segment_lite.errors import SpoolCorruptError, SpoolWriteError
from segment_lite.queue import Batch, NumberedQueue
from segment_lite.spool.directory import (
    DISK_FULL_ERRNOS,
    Loss,
    PendingBatch,
    SpoolDirectory,
    owner_directories,
    remove_stale_new_directories,
    sync_files,
)
from segment_lite.spool.factory import FSYNC_POLICIES
from segment_lite.spool.records import RECORD_HEADER_BYTES, encode_record

if TYPE_CHECKING:
    from segment_lite.ledger import Ledger

__all__ = [
    "DEFAULT_SEGMENT_BYTES",
    "FSYNC_POLICIES",
    "SYNC_INTERVAL_S",
    "DiskSpool",
]

#: The longest a written record waits for its fsync under the "batch" policy.
SYNC_INTERVAL_S = 0.02
#: Segment files are this big at most (smaller when the spool is small), so
#: delivered records are deleted a segment at a time.
DEFAULT_SEGMENT_BYTES = 8 * 1024 * 1024
MIN_SEGMENT_BYTES = 4096

log = logging.getLogger("segment")  # the client's logger, as segment-analytics-python names it

# Spools open in this process, so a forked child can let go of its parent's.
_OPEN: weakref.WeakSet[DiskSpool] = weakref.WeakSet()


@dataclass
class _Taken:
    """A batch out for delivery: where its records are, and whether they count as left in the spool."""

    directory: SpoolDirectory
    entry: PendingBatch
    counted_as_kept: bool = False


class DiskSpool(NumberedQueue):
    """A ``MessageQueue`` on disk: what ``put`` accepted is delivered by this process or the next.

    The spool lives in an owner directory of its own under ``root`` (see
    ``directory.py``), created and locked when the spool opens. Opening also
    adopts every orphaned owner directory written with the same write key (its
    process exited or died), so their messages are delivered first, in order.

    ``put`` copies one checksummed record into the segment being written, which
    is memory-mapped: the page cache itself. Once it returns True the message
    survives the process being killed; it reaches the disk within
    ``SYNC_INTERVAL_S`` under the ``"batch"`` policy, before ``put`` returns under
    ``"always"``, and whenever the operating system writes it under ``"never"``.
    Nothing per message is kept in Python memory: workers read the records back
    from the files (through the page cache).

    A batch is acknowledged once settled, in order, by moving the directory's
    cursor past it; a segment file is deleted once the cursor passes its end, and
    an adopted directory once all of it is settled. A crash re-sends at most the
    batches that were in flight (Segment deduplicates them by messageId).

    ``max_bytes`` bounds the undelivered records on disk; a full spool refuses
    (``put`` returns False) or makes callers wait, as the memory queue does. A
    failed write (disk full, I/O error) raises ``SpoolWriteError``: the message
    is not accepted, and there is no fallback to memory.
    """

    durable = True

    def __init__(
        self,
        root: str,
        *,
        max_bytes: int,
        wake_at: int,
        fingerprint: str,
        fsync: str = "batch",
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}, got {fsync!r}")
        self.root = root
        self.max_bytes = max(1, int(max_bytes))
        self.wake_at = max(1, int(wake_at))
        self.fsync = fsync
        self.segment_bytes = max(MIN_SEGMENT_BYTES, min(int(segment_bytes), self.max_bytes // 4))
        self.wake = threading.Event()
        self._fingerprint = fingerprint
        self._lock = threading.Lock()  # appends, counters, acknowledgements
        self._read_lock = threading.Lock()  # one reader at a time; reads happen outside _lock
        self._not_full = threading.Condition(self._lock)
        self._settled = threading.Condition(self._lock)
        self._pid = os.getpid()
        self._home: Optional[SpoolDirectory] = None
        self._adopted: list[SpoolDirectory] = []  # orphans being delivered, before our own records
        self._open_error: Optional[OSError] = None
        self._queued = 0  # records not yet taken
        self._queued_bytes = 0  # their payload bytes
        self._disk_bytes = 0  # bytes of records not yet settled, headers included
        self._accepted = 0  # records numbered so far: recovered ones, then this process's
        self._taken = 0
        self._recovered = 0
        self._kept = 0
        self._in_flight: dict[int, _Taken] = {}
        self._returned: collections.deque[Batch] = collections.deque()  # cut short, to take again
        self._blocked = 0
        self._flush_target = 0
        self._draining = False
        self._sealed = False  # set by seal(): every later put is refused
        self._closed = False
        self._forked_away = False
        self._ledger: Optional[Ledger] = None
        self._unreported: list[Loss] = []
        self._dirty = threading.Event()  # written since the last fsync
        self._stop_syncing = threading.Event()
        self._syncer: Optional[threading.Thread] = None
        self._last_sync = 0.0
        self._open()
        _OPEN.add(self)
        # Close the descriptors (never delete anything) if the spool is dropped unclosed.
        finalizer = weakref.finalize(self, _close_quietly, [*self._adopted, self._home])
        finalizer.atexit = False  # at exit the pipeline's exit flush still needs the files

    # -- opening -------------------------------------------------------------------

    def _open(self) -> None:
        root = self.root
        try:
            remove_stale_new_directories(root)
            self._home = SpoolDirectory.create(
                root, self._fingerprint, segment_bytes=self.segment_bytes, sync=self.fsync != "never"
            )
        except OSError as exc:
            self._open_error = exc
            log.error(
                "cannot create a spool directory under %s (%s); messages will be refused and counted "
                "as spool_write_failed",
                root,
                exc,
            )
        for path in owner_directories(root):
            if self._home is not None and path == self._home.path:
                continue
            try:
                directory = SpoolDirectory.adopt(path, self._fingerprint, segment_bytes=self.segment_bytes)
                if directory is None:
                    continue  # live, or written for another write key
                scan = directory.scan()
            except OSError as exc:
                log.warning("could not adopt the orphaned spool %s: %s", path, exc)
                continue
            self._unreported.extend(scan.losses)
            if not scan.records:
                directory.close(remove=True)
                continue
            directory.unacked = scan.records
            self._adopted.append(directory)
            self._recovered += scan.records
            self._queued += scan.records
            self._queued_bytes += scan.nbytes - scan.records * RECORD_HEADER_BYTES
            self._disk_bytes += scan.nbytes
        self._accepted = self._recovered
        if self._recovered:
            log.info(
                "spool: adopted %d undelivered message(s) left by earlier processes in %s",
                self._recovered,
                root,
            )
            self.wake.set()

    @property
    def directory(self) -> Optional[str]:
        """The owner directory this process writes into (None if it could not be created)."""
        return None if self._home is None else self._home.path

    @property
    def adopted_directories(self) -> list[str]:
        """Orphaned owner directories being delivered by this spool."""
        return [directory.path for directory in self._adopted]

    # -- accepting -----------------------------------------------------------------

    def put(self, item: bytes, block: bool = False, timeout: Optional[float] = None) -> bool:
        """Append ``item``; False when the spool is full (after waiting up to ``timeout`` if ``block``).

        Raises ``SpoolWriteError`` when the write fails (disk full, I/O error).
        """
        record = encode_record(item, int(time.time() * 1000))
        size = len(record)
        with self._lock:
            home = self._home
            if self._sealed:
                return False
            if home is None or self._closed or self._forked_away:
                if self._open_error is not None:
                    raise self._write_error(self._open_error, self.root)
                return False
            if self._disk_bytes + size > self.max_bytes:
                if not block or not self._wait_for_room(size, timeout):
                    return False
            try:
                try:
                    home.append(record)
                except OSError as exc:
                    # A full disk may be full of our own delivered records: free them and retry once.
                    if exc.errno not in DISK_FULL_ERRNOS or not home.reclaim():
                        raise
                    home.append(record)
            except OSError as exc:
                raise self._write_error(exc, home.path) from None
            home.unacked += 1
            self._disk_bytes += size
            self._queued_bytes += len(item)
            count = self._queued = self._queued + 1
            self._accepted += 1
            if self.fsync == "batch":
                if not self._dirty.is_set():
                    self._dirty.set()
                    if self._syncer is None:
                        self._start_syncer()
            elif self.fsync == "always":
                self._sync_home_locked()
            elif home.retired_fds:
                home.close_retired()
        if count >= self.wake_at and not self.wake.is_set():
            self.wake.set()
        return True

    @staticmethod
    def _write_error(exc: OSError, path: str) -> SpoolWriteError:
        return SpoolWriteError(
            f"could not write to the spool in {path}: {exc.strerror or exc}; the message was not accepted",
            exc.errno,
        )

    def _wait_for_room(self, size: int, timeout: Optional[float]) -> bool:
        if size > self.max_bytes:
            return False  # can never fit: waiting would hang
        deadline = None if timeout is None else time.monotonic() + timeout
        self._blocked += 1
        try:
            while self._disk_bytes + size > self.max_bytes:
                if self._closed or self._draining or self._sealed:
                    return False
                self.wake.set()  # full: make sure a worker is delivering
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._not_full.wait(remaining)
            return not self._sealed
        finally:
            self._blocked -= 1

    # -- syncing -------------------------------------------------------------------

    def _start_syncer(self) -> None:
        thread = threading.Thread(target=self._sync_loop, name="segment_lite-spool-sync", daemon=True)
        try:
            thread.start()
        except RuntimeError:
            # No new threads (interpreter exit): sync on the caller's thread instead.
            self._sync_home_locked()
            return
        self._syncer = thread

    def _sync_loop(self) -> None:
        while True:
            self._dirty.wait()
            # Group the appends of the next few milliseconds into one fsync.
            delay = self._last_sync + SYNC_INTERVAL_S - time.monotonic()
            if delay > 0:
                self._stop_syncing.wait(delay)
            self._dirty.clear()
            # Checked after the clear: close() sets the stop before it sets _dirty, so a
            # stop missed here comes with a _dirty that the next wait sees.
            if self._stop_syncing.is_set():
                return  # close() syncs what is left
            self._sync_home()
            self._last_sync = time.monotonic()

    def _sync_home(self) -> None:
        """fsync the home directory's new writes, outside the lock (the syncer thread)."""
        with self._lock:
            home = self._home
            if home is None or self._closed or self._forked_away:
                return
            # Only this thread and close() (which stops this thread first) close write descriptors.
            retired, home.retired_fds = home.retired_fds, []
            write_fd, new_file = home.write_fd, home.new_file
            home.new_file = False
        try:
            sync_files(home.path, retired, write_fd, new_file)
        except OSError as exc:
            log.error("spool: fsync failed in %s: %s", home.path, exc)

    def _sync_home_locked(self, cursor: bool = False) -> None:
        home = self._home
        if home is None:
            return
        try:
            home.sync(cursor)
        except OSError as exc:
            log.error("spool: fsync failed in %s: %s", home.path, exc)

    # -- delivering ----------------------------------------------------------------

    def take(self, max_count: int, max_bytes: int) -> Optional[Batch]:
        """The next batch: records cut short earlier first, then orphans' records, then ours."""
        with self._read_lock:
            while True:
                with self._lock:
                    if self._returned:
                        return self._returned.popleft()
                    if self._queued <= 0 or self._draining or self._closed or self._forked_away:
                        return None
                    directory = next((d for d in self._adopted if not d.exhausted), self._home)
                    if directory is None:
                        return None
                    write_end = directory.write_end
                result = directory.read(max_count, max_bytes, write_end)
                batch: Optional[Batch] = None
                move_on = False  # an orphan was read to its end: go on with the next directory
                with self._lock:
                    if result.lost_records:
                        self._queued -= result.lost_records
                        self._taken += result.lost_records  # settled: lost, and counted below
                        directory.unacked -= result.lost_records
                        self._disk_bytes -= sum(loss.nbytes for loss in result.lost)
                        self._settled.notify_all()
                    if result.items:
                        count = len(result.items)
                        batch = Batch(self._taken, result.items, result.nbytes)
                        self._taken += count
                        self._queued -= count
                        self._queued_bytes -= result.nbytes - count
                        entry = PendingBatch(result.end, count, result.disk_bytes)
                        directory.in_flight.append(entry)
                        self._in_flight[batch.seq] = _Taken(directory, entry)
                    elif directory is not self._home and directory.exhausted:
                        self._finish_adopted(directory)
                        move_on = True
                self._report(result.lost)
                if batch is not None or not move_on:
                    return batch

    def done(self, batch: Batch, keep: bool = False) -> None:
        """Settle ``batch``: acknowledge it, or with ``keep`` hold on to its records undelivered."""
        with self._lock:
            taken = self._in_flight.get(batch.seq)
            if taken is None:
                return
            if keep and not (self._draining or self._closed):
                self._returned.append(batch)  # cut short by a deadline: send it again
                self.wake.set()
                return
            del self._in_flight[batch.seq]
            directory = taken.directory
            if keep:
                if not taken.counted_as_kept:
                    self._kept += taken.entry.count  # stays on disk for the next process
            elif self._closed:
                if taken.counted_as_kept:  # settled after close: not left after all (sent again, though)
                    self._kept -= taken.entry.count
            else:
                directory.unacked -= taken.entry.count
                self._disk_bytes -= directory.settle(taken.entry)
                if directory is not self._home and directory.exhausted and not directory.in_flight:
                    self._finish_adopted(directory)
            self._settled.notify_all()
            if self._blocked:
                self._not_full.notify_all()

    def _finish_adopted(self, directory: SpoolDirectory) -> None:
        """Delete an adopted directory whose records are all settled (or lost)."""
        if directory.in_flight or directory not in self._adopted:
            return
        self._adopted.remove(directory)
        directory.close(remove=directory.unacked <= 0)

    def send_due(self, batch_size: int) -> bool:
        """Whether a worker should take a batch now rather than wait for one to fill."""
        return (
            self._queued >= batch_size
            or self._taken < self._flush_target
            or self._blocked > 0
            or bool(self._returned)
        )

    def seal(self) -> None:
        """Refuse every later ``put``; producers blocked for room wake and are refused."""
        with self._lock:
            self._sealed = True
            self._not_full.notify_all()

    def drain(self) -> Optional[Batch]:
        """Stop handing out records; what is still undelivered stays on disk for the next process.

        Returns None (nothing is lost): those messages are counted by ``kept_count``.
        """
        with self._lock:
            self._draining = True
            self._leave_undelivered_locked(in_flight=False)
            self._settled.notify_all()
            self._not_full.notify_all()
        return None

    def _leave_undelivered_locked(self, in_flight: bool) -> None:
        self._kept += self._queued
        self._queued = 0
        self._queued_bytes = 0
        self._taken = self._accepted
        while self._returned:
            batch = self._returned.popleft()
            taken = self._in_flight.pop(batch.seq, None)
            if taken is not None:
                self._kept += taken.entry.count
        if in_flight:
            for taken in self._in_flight.values():
                if not taken.counted_as_kept:
                    taken.counted_as_kept = True
                    self._kept += taken.entry.count

    # -- sizes and counts ----------------------------------------------------------

    def qsize(self) -> int:
        """Records waiting to be taken (including batches cut short, to be taken again)."""
        return self._queued + sum(len(batch) for batch in list(self._returned))

    def nbytes(self) -> int:
        """Payload bytes of the records waiting to be taken."""
        return self._queued_bytes

    def disk_bytes(self) -> int:
        """Bytes of undelivered records on disk, headers included (what ``max_bytes`` bounds)."""
        return self._disk_bytes

    def accepted_count(self) -> int:
        """Records numbered so far: those recovered at open, then those accepted here."""
        return self._accepted

    def pending_count(self) -> int:
        """Records not yet settled: waiting, or out for delivery."""
        with self._lock:
            return self._queued + sum(taken.entry.count for taken in self._in_flight.values())

    def recovered_count(self) -> int:
        """Records earlier processes left in orphaned directories, adopted at open."""
        return self._recovered

    def kept_count(self) -> int:
        """Records left on disk undelivered, for the next process (once draining or closed)."""
        return self._kept

    # -- losses --------------------------------------------------------------------

    def report_losses_to(self, ledger: Ledger) -> None:
        """Count unreadable records in ``ledger`` as ``spool_corrupt`` (those found at open: now)."""
        with self._lock:
            self._ledger = ledger
            losses, self._unreported = self._unreported, []
        self._report(losses)

    def _report(self, losses: list[Loss]) -> None:
        for loss in losses:
            error = SpoolCorruptError(loss.records, loss.path, loss.offset, loss.nbytes)
            if self._ledger is None:
                self._unreported.append(loss)
                log.error("spool: %s", error)
            else:
                self._ledger.drop("spool_corrupt", error, [], count=loss.records)

    # -- closing -------------------------------------------------------------------

    def close(self) -> None:
        """Sync and release the spool: undelivered records stay on disk for the next process.

        The owner directory is deleted when everything in it was delivered.
        """
        if self._forked_away:
            return
        self._stop_syncing.set()
        self._dirty.set()
        syncer = self._syncer
        if syncer is not None and syncer is not threading.current_thread():
            syncer.join()
        with self._read_lock, self._lock:
            if self._closed:
                return
            self._leave_undelivered_locked(in_flight=True)
            self._closed = True
            if self.fsync != "never":
                self._sync_home_locked(cursor=True)
            home = self._home
            if home is not None:
                home.close(remove=home.unacked <= 0 and not home.in_flight)
            for directory in self._adopted:
                directory.close(remove=directory.unacked <= 0 and not directory.in_flight)
            self._adopted = []
            self._settled.notify_all()
            self._not_full.notify_all()
        _OPEN.discard(self)

    def _forget_after_fork(self) -> None:
        """In a forked child: drop the parent's descriptors without touching its files or lock."""
        self._forked_away = True
        self._syncer = None
        _close_quietly([*self._adopted, self._home])

    def __repr__(self) -> str:
        return f"<DiskSpool {self.directory!r} queued={self._queued} fsync={self.fsync!r}>"


def _close_quietly(directories: list[Optional[SpoolDirectory]]) -> None:
    for directory in directories:
        if directory is not None:
            directory.abandon()


def _forget_parents_spools() -> None:
    pid = os.getpid()
    for spool in list(_OPEN):
        if spool._pid != pid:
            spool._forget_after_fork()
            _OPEN.discard(spool)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_parents_spools)
