"""The disk spool: a ``MessageQueue`` whose accepted messages survive crashes, kills and restarts."""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import mmap
import os
import socket
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from segment_lite.after_fork import on_fork_in_child
from segment_lite.errors import SpoolCorruptError, SpoolWriteError, ValidationError
from segment_lite.queue import Batch, NumberedQueue
from segment_lite.spool import journal, store
from segment_lite.spool.factory import FSYNC_POLICIES, key_fingerprint
from segment_lite.spool.store import (
    DISK_FULL_ERRNOS,
    ROW_OVERHEAD_BYTES,
    SYNCHRONOUS,
    OwnerDirectory,
    connect,
    create_schema,
    orphan_contents,
    owner_directories,
    remove_stale_new_directories,
)

if TYPE_CHECKING:
    from segment_lite.ledger import Ledger

__all__ = ["CACHE_MAX_BYTES", "FSYNC_POLICIES", "STATS_INTERVAL_S", "SYNC_INTERVAL_S", "DiskSpool"]

#: The longest an accepted message waits for its fsync under the "batch" policy.
SYNC_INTERVAL_S = 0.02
#: The most the rows kept in memory take (their bytes, and ``_ROW_MEMORY_BYTES`` each): the
#: recent ones, which ``take`` hands out without reading the database, and those not yet moved
#: into it. Past this, moved rows are forgotten (read back when taken) and pending ones moved.
CACHE_MAX_BYTES = 4 << 20
#: The sync thread moves the pending rows into the database once they hold this many bytes.
MOVE_AT_BYTES = 1 << 20
#: A journal past this size (1/16 of a smaller ``spool_max_bytes``, 64 KiB at least) is replaced
#: by a new one, its pending rows moved into the database first.
JOURNAL_MAX_BYTES = 8 << 20
_MIN_JOURNAL_BYTES = 64 << 10
_ROW_MEMORY_BYTES = 200  # a kept row's dict entry, tuple and numbers, about
#: The longest ``spool status`` shows a live owner's counts out of date (they are published by
#: the sync thread; each publication takes the spool's lock for a moment).
STATS_INTERVAL_S = 0.25

log = logging.getLogger("segment")  # the client's logger, as segment-analytics-python names it

# Ids are given here, not by SQLite: it would start again at 1 once the table is empty,
# behind the rows already handed out.
_INSERT = "INSERT INTO messages (id, key, accepted_ms, body) VALUES (?, ?, ?, ?)"
_SELECT = "SELECT id, body FROM messages WHERE id > ? AND id < ? ORDER BY id LIMIT ?"
_DELETE = "DELETE FROM messages WHERE id BETWEEN ? AND ?"
_SET_STATE = "UPDATE journal SET gen = ?, offset = ?"
_OLDEST = "SELECT accepted_ms FROM messages ORDER BY id LIMIT 1"
_HOSTNAME = socket.gethostname()
_ADOPT = (
    "INSERT INTO main.messages (key, accepted_ms, body) "
    "SELECT key, accepted_ms, body FROM orphan.messages WHERE key = ? ORDER BY id"
)

# Spools open in this process, so a forked child can let go of its parent's.
_OPEN: weakref.WeakSet[DiskSpool] = weakref.WeakSet()
# Connections a forked child inherited: never closed there (SQLite connections must
# not be used across fork(), and closing is a use), so they stay referenced here.
_INHERITED: list[object] = []


def _never_free(connection: sqlite3.Connection) -> None:
    """Keep an inherited connection alive until the process ends, whatever is collected.

    In exclusive mode the connection believes it holds the database's lock: freed
    (at interpreter exit, or once nothing refers to it), it would checkpoint its
    parent's WAL and delete it while the parent writes on. One reference more
    than anything will give back makes sure it is never freed.
    """
    _INHERITED.append(connection)
    try:
        import ctypes

        ctypes.pythonapi.Py_IncRef(ctypes.py_object(connection))
    except (ImportError, AttributeError, OSError):
        pass  # without ctypes, the list above holds it until the interpreter clears this module


@dataclass
class _Taken:
    """A batch out for delivery: its rows, and whether they count as left in the spool."""

    first_id: int
    last_id: int
    count: int
    disk_bytes: int
    counted_as_kept: bool = False


class DiskSpool(NumberedQueue):
    """A ``MessageQueue`` on disk: what ``put`` accepted is delivered by this process or the next.

    The spool lives in an owner directory of its own under ``root`` (see
    ``store.py``), created and locked when the spool opens, holding a journal
    (``journal.py``) and a SQLite database in WAL mode. Opening also adopts every
    orphaned owner directory (its process exited or died): its journal is
    replayed into its database, then the rows written with this spool's write
    key are moved into this database, first, in order, and the orphan is deleted
    once empty (rows of another write key stay there for a process with that key).

    ``put`` appends one record to the journal with one ``write()`` and commits
    nothing: once it returns True the message is in the kernel's page cache and
    survives the process being killed. It reaches the disk within
    ``SYNC_INTERVAL_S`` under the ``"batch"`` policy (a background thread
    fdatasyncs the journal), before ``put`` returns under ``"always"``, and
    whenever the operating system writes it under ``"never"``. The row is kept
    in memory, pending: a batch taken soon after is handed out from memory, and
    when it is delivered before being moved the row never enters the database.
    Pending rows are moved into the database in one transaction (by the sync
    thread once they add up to ``MOVE_AT_BYTES``, or when a settled batch comes
    after them, a journal is replaced, or the spool closes), which also advances
    the database's journal state (``journal (gen, offset)``) past them. Memory
    holds at most about ``CACHE_MAX_BYTES`` of rows.

    A batch is settled in one transaction: its moved rows are deleted, its
    pending ones skipped, and the journal state advanced past them (over
    pending rows before them, which are moved), so a delivered message is never
    sent again, and a crash re-sends at most the batches that were in flight
    (Segment deduplicates them by messageId). The database is in SQLite's
    exclusive locking mode (a commit takes no file lock), which keeps every other
    process out while this one lives: the counts ``spool status`` shows for it
    are published in ``store.STATS_NAME`` by the sync thread, at most every
    ``STATS_INTERVAL_S``.

    ``max_bytes`` bounds the undelivered messages on disk (each counted with
    ``ROW_OVERHEAD_BYTES``); a full spool refuses (``put`` returns False) or makes
    callers wait, as the memory queue does. A failed write (disk full, I/O error)
    raises ``SpoolWriteError``: the message is not accepted.
    """

    durable = True

    def __init__(
        self, root: str, *, max_bytes: int, wake_at: int, fingerprint: str, fsync: str = "batch"
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValidationError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}, got {fsync!r}")
        self.root = root
        self.max_bytes = max(1, int(max_bytes))
        self.wake_at = max(1, int(wake_at))
        self.fsync = fsync
        self.wake = threading.Event()
        self._fingerprint = fingerprint
        self._lock = threading.Lock()  # the connection, the journal, the rows kept, the counters
        self._not_full = threading.Condition(self._lock)
        self._settled = threading.Condition(self._lock)
        self._pid = os.getpid()
        self._home: Optional[OwnerDirectory] = None
        #: The one connection (SQLite's exclusive mode admits no other): take, done and moves share it.
        self._writer: Optional[sqlite3.Connection] = None
        self._wal_fd = -1
        self._journal_fd = -1
        self._journal_map: Optional[mmap.mmap] = None  # the journal's room, mapped: put copies into it
        self._journal_gen = 0
        self._journal_end = 0  # its size: where the next record goes
        self._journal_fingerprint = fingerprint  # of the write key its records were accepted under
        self._journal_limit = max(_MIN_JOURNAL_BYTES, min(JOURNAL_MAX_BYTES, self.max_bytes // 16))
        #: A journal's room: twice the size at which the sync thread replaces it, so that put
        #: replaces it only when the sync thread is far behind.
        self._journal_room = 2 * self._journal_limit
        self._journal_dirty = False  # written since its last fsync
        self._wal_dirty = False  # committed since the WAL's last fsync
        #: Held while the sync thread fsyncs the journal, so a rotation does not close it meanwhile.
        self._fd_lock = threading.Lock()
        self._adopted: list[str] = []
        self._open_error: Optional[BaseException] = None
        #: Rows kept in memory, by id: (accepted_ms, body, where their journal record ends). Ids
        #: from ``_cache_first`` on; all those past ``_moved_upto`` (pending) are here.
        self._rows: dict[int, tuple[int, bytes, int]] = {}
        self._cache_first = 1
        self._cache_bytes = 0
        self._moved_upto = 0  # rows up to this id are in the database or settled (the journal state)
        self._pending_bytes = 0  # of the rows past it, as _cache_bytes counts them
        self._unrecorded: list[tuple[int, int]] = []  # id ranges settled, their transaction still to do
        self._read_after = 0  # id of the last row handed out
        self._next_id = 1  # id of the next row put
        self._queued = 0  # rows not yet taken
        self._queued_bytes = 0  # their message bytes
        self._disk_bytes = 0  # rows not yet settled, with ROW_OVERHEAD_BYTES each
        self._accepted = 0  # messages numbered so far: recovered ones, then this process's
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
        self._unreported: list[SpoolCorruptError] = []
        self._dirty = threading.Event()  # written since the sync thread's last pass
        self._fingerprints = {fingerprint}  # of the rows in our database: published in the stats
        self._stop_syncing = threading.Event()
        self._syncer: Optional[threading.Thread] = None
        self._last_sync = 0.0
        #: fsyncs made: of the journal and WAL by the sync thread ("batch"), of the journal by put ("always").
        self.syncs = 0
        self._open()
        _OPEN.add(self)

    # -- opening -------------------------------------------------------------------

    def _open(self) -> None:
        root = self.root
        try:
            remove_stale_new_directories(root)
            self._home = OwnerDirectory.create(root, sync=self.fsync != "never")
            self._open_database(self._home, gen=1)
        except (OSError, sqlite3.Error) as exc:
            self._open_error = exc
            self._release(remove=True)
            self._home = None
            log.error(
                "cannot create a spool under %s (%s); messages will be refused and counted "
                "as spool_write_failed",
                root,
                exc,
            )
            return
        assert self._writer is not None
        for path in owner_directories(root):
            if path != self._home.path:
                self._adopt(path, self._writer)
        count, nbytes, last = self._writer.execute(
            "SELECT count(*), coalesce(sum(length(body)), 0), coalesce(max(id), 0) FROM messages"
        ).fetchone()
        self._moved_upto = last
        self._next_id = self._cache_first = last + 1
        self._recovered = self._accepted = self._queued = count
        self._queued_bytes = nbytes
        self._disk_bytes = nbytes + count * ROW_OVERHEAD_BYTES
        if count:
            log.info("spool: adopted %d undelivered message(s) left by earlier processes in %s", count, root)
            self.wake.set()
        self._publish_stats()

    def _open_database(self, home: OwnerDirectory, gen: int) -> None:
        """Make the database (its journal state at journal ``gen``), then journal ``gen``."""
        synchronous = SYNCHRONOUS[self.fsync]
        pages = store.wal_pages(self.max_bytes)
        self._writer = connect(
            home.database, synchronous, create=True, exclusive=True, checkpoint_pages=pages
        )
        create_schema(self._writer, gen)
        store.preallocate_wal(home.database, pages)
        self._wal_fd = os.open(home.database + "-wal", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self._journal_fd, self._journal_map = self._new_journal(home, gen)
        self._journal_gen, self._journal_end = gen, journal.HEADER_SIZE
        self._journal_fingerprint = self._fingerprint
        if self.fsync != "never":
            store.fsync_directory(home.path)  # the names of the database, its WAL and the journal, once

    def _release_database(self) -> None:
        if self._journal_fd >= 0:
            with self._fd_lock:
                self._close_journal()
        if self._wal_fd >= 0:
            os.close(self._wal_fd)
            self._wal_fd = -1
        if self._writer is not None:
            try:
                self._writer.close()  # checkpoints the WAL into the database
            except sqlite3.Error as exc:
                log.error("spool: closing %s: %s", self.directory, exc)
        self._writer = None

    def _adopt(self, path: str, writer: sqlite3.Connection) -> None:
        """Move the messages of our write key from an orphaned directory into ours; delete it once empty.

        One orphan at a time: it is attached, its journal replayed into its
        database (one transaction), emptied and detached (its files closed)
        before the next, so the descriptors held do not grow with them. A crash
        between the move and the delete leaves the rows in both: sent twice
        (deduplicated by messageId), never lost.
        """
        directory = OwnerDirectory.adopt(path)
        if directory is None:
            return  # its owner is alive
        database = directory.database
        if not os.path.lexists(database):
            others = [name for name in _listdir(path) if name not in (store.LOCK_NAME, store.STATS_NAME)]
            if others:
                log.warning(
                    "spool: %s holds no %s (files of another version?); left alone", path, store.DATABASE_NAME
                )
            directory.release(remove=not others)  # empty: its owner died while making it
            return
        left = 0
        try:
            writer.execute("ATTACH DATABASE ? AS orphan", ("file:" + store._uri_path(database) + "?mode=rw",))
            try:
                replayed = store.replay_journals(writer, path)
                contents = orphan_contents(writer)
                moved = 0
                if self._fingerprint in contents.fingerprints:
                    writer.execute("BEGIN IMMEDIATE")
                    try:
                        moved = writer.execute(_ADOPT, (self._fingerprint,)).rowcount
                        writer.execute("COMMIT")
                    except BaseException:
                        writer.execute("ROLLBACK")
                        raise
                    writer.execute("DELETE FROM orphan.messages WHERE key = ?", (self._fingerprint,))
                    self._adopted.append(path)
                left = contents.messages - moved
            finally:
                writer.execute("DETACH DATABASE orphan")
        except (sqlite3.Error, OSError) as exc:
            self._set_aside(directory, exc)
            return
        for where, offset, nbytes in replayed.damaged:
            # How many messages the damaged bytes held cannot be read: one loss is counted for them.
            self._unreported.append(SpoolCorruptError(1, where, offset, nbytes))
            log.error("spool: the journal %s is damaged from offset %d; what follows is lost", where, offset)
        directory.release(remove=left == 0)

    def _set_aside(self, directory: OwnerDirectory, exc: Exception) -> None:
        """An orphan whose database cannot be read: rename it out of the way and count the loss."""
        nbytes = sum(_size(os.path.join(directory.path, name)) for name in _listdir(directory.path))
        try:
            directory.set_aside()
        except OSError:
            pass  # left under its name: tried again (and counted again) by the next process
        directory.release(remove=False)
        # How many messages it held cannot be read: one loss is counted for the database.
        self._unreported.append(SpoolCorruptError(1, directory.path, 0, nbytes))
        log.error("spool: the orphaned spool database in %s cannot be read (%s)", directory.path, exc)

    @property
    def directory(self) -> Optional[str]:
        """The owner directory this process writes into (None if it could not be created)."""
        return None if self._home is None else self._home.path

    @property
    def adopted_directories(self) -> list[str]:
        """Orphaned owner directories whose messages this spool took over at open."""
        return list(self._adopted)

    def change_write_key(self, write_key: str) -> None:
        """Store later messages under ``write_key``'s fingerprint: after a crash, its process takes them.

        The journal is replaced by one of the new key (its header names the key),
        its pending rows moved into the database under the old one.
        """
        fingerprint = key_fingerprint(write_key)
        with self._lock:
            self._fingerprint = fingerprint
            self._fingerprints.add(fingerprint)
            if self._journal_fd >= 0 and fingerprint != self._journal_fingerprint:
                try:
                    self._rotate()
                except (OSError, sqlite3.Error) as exc:  # tried again by the next put
                    log.error("spool: could not start a journal for the new write key: %s", exc)

    # -- accepting -----------------------------------------------------------------

    def put(self, item: bytes, block: bool = False, timeout: Optional[float] = None) -> bool:
        """Append ``item``; False when the spool is full (after waiting up to ``timeout`` if ``block``).

        Raises ``SpoolWriteError`` when the write fails (disk full, I/O error).
        """
        size = len(item) + ROW_OVERHEAD_BYTES
        with self._lock:
            if self._sealed:
                return False
            if self._journal_fd < 0 or self._closed or self._forked_away:
                if self._open_error is not None:
                    raise self._write_error(self._open_error)
                return False
            if self._disk_bytes + size > self.max_bytes:
                if not block or not self._wait_for_room(size, timeout):
                    return False
            row_id = self._next_id
            accepted_ms = int(time.time() * 1000)
            record = journal.encode(row_id, accepted_ms, item)
            try:
                if self._journal_fingerprint != self._fingerprint:
                    self._rotate()  # a key change whose rotation failed: no record under the old key
                self._append(record)
            except (OSError, sqlite3.Error) as exc:
                # A full disk may be full of delivered messages: start over and retry once.
                full = getattr(exc, "errno", None) in DISK_FULL_ERRNOS
                reclaimable = self._journal_end > journal.HEADER_SIZE and self._all_settled()
                if not (full and reclaimable and self._start_over()):
                    raise self._write_error(exc) from None
                try:
                    self._append(record)
                except OSError as again:
                    raise self._write_error(again) from None
            self._rows[row_id] = (accepted_ms, item, self._journal_end)
            self._next_id = row_id + 1
            cost = len(item) + _ROW_MEMORY_BYTES
            self._cache_bytes += cost
            self._pending_bytes += cost
            self._disk_bytes += size
            self._queued_bytes += len(item)
            count = self._queued = self._queued + 1
            self._accepted += 1
            if self._pending_bytes >= CACHE_MAX_BYTES:
                self._move_pending()  # the sync thread is behind: do its work
            elif self._cache_bytes > CACHE_MAX_BYTES:
                self._trim()
            if not self._dirty.is_set():
                self._wake_syncer()
        if count >= self.wake_at and not self.wake.is_set():
            self.wake.set()
        return True

    def _append(self, record: bytes) -> None:
        """Write one record at the journal's end (under the lock); fdatasync it first under "always"."""
        if self._journal_map is not None and self._journal_end + len(record) > len(self._journal_map):
            self._rotate()  # the sync thread is far behind: no room left in this journal
        fd, end, mapped = self._journal_fd, self._journal_end, self._journal_map
        if mapped is not None:
            journal.append(mapped, record, end)
        else:
            journal.write(fd, record, end)  # a disk too full to reserve a journal's room
        if self.fsync == "always":
            try:
                store.fdatasync(fd)
            except OSError:
                with contextlib.suppress(OSError):
                    journal.unwrite(fd, mapped, end, len(record))  # not on disk: not accepted
                raise
            self.syncs += 1
        else:
            self._journal_dirty = True
        self._journal_end = end + len(record)

    def _write_error(self, exc: BaseException) -> SpoolWriteError:
        path = self.root if self._home is None else self._home.path
        code = getattr(exc, "errno", None)
        if isinstance(exc, sqlite3.Error):
            full = getattr(exc, "sqlite_errorcode", None) == 13 or "full" in str(exc)  # SQLITE_FULL
            code = errno.ENOSPC if full else errno.EIO
            reason = f"{os.strerror(code)} ({exc})"
        else:
            reason = getattr(exc, "strerror", None) or str(exc)
        return SpoolWriteError(
            f"could not write to the spool in {path}: {reason}; the message was not accepted", code
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
            return not (self._closed or self._sealed)
        finally:
            self._blocked -= 1

    # -- moving into the database ----------------------------------------------------

    def _record(self, upto: int, new_journal: Optional[tuple[int, int]] = None) -> None:
        """One transaction (under the lock): every settlement not yet recorded, and the rows up to ``upto``.

        The settled rows in the database are deleted; the pending rows up to
        ``upto`` (at least up to the last one settled) are inserted, but for the
        settled ones, which never enter the database; and the journal state is
        advanced past them (or set to ``new_journal``, a journal that replaces
        this one). Either all of it is on disk or none of it: raises the
        ``sqlite3.Error`` of a failed transaction, everything left to do again.
        """
        writer = self._writer
        if writer is None:
            raise sqlite3.OperationalError("the spool's database is closed")
        moved = self._moved_upto
        deletes: list[tuple[int, int]] = []
        settled: set[int] = set()
        for first, last in self._unrecorded:
            if first <= moved:
                deletes.append((first, min(last, moved)))
            if last > moved:
                settled.update(range(max(first, moved + 1), last + 1))
                upto = max(upto, last)
        rows = self._rows
        key = self._journal_fingerprint
        inserts = []
        nbytes = 0
        for row_id in range(moved + 1, upto + 1):
            accepted_ms, body, _ = rows[row_id]
            nbytes += len(body) + _ROW_MEMORY_BYTES
            if row_id not in settled:
                inserts.append((row_id, key, accepted_ms, body))
        state = new_journal or ((self._journal_gen, rows[upto][2]) if upto > moved else None)
        if not (deletes or state):
            return
        try:
            writer.execute("BEGIN")
            if deletes:
                writer.executemany(_DELETE, deletes)
            if inserts:
                writer.executemany(_INSERT, inserts)
            if state:
                writer.execute(_SET_STATE, state)
            writer.execute("COMMIT")
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                writer.execute("ROLLBACK")  # SQLite may have rolled it back already
            raise
        self._unrecorded.clear()
        if upto > moved:
            self._moved_upto = upto
            self._pending_bytes -= nbytes
        self._wal_dirty = True
        self._trim()

    def _move_pending(self) -> None:
        """Move every pending row into the database (under the lock); on failure they stay pending."""
        try:
            self._record(self._next_id - 1)
        except sqlite3.Error as exc:
            log.error("spool: could not move messages into the database in %s: %s", self.directory, exc)

    def _trim(self) -> None:
        """Forget rows no ``take`` needs (taken, recorded), and moved ones while over ``CACHE_MAX_BYTES``."""
        rows = self._rows
        first, moved = self._cache_first, self._moved_upto
        while first <= moved and (first <= self._read_after or self._cache_bytes > CACHE_MAX_BYTES):
            row = rows.pop(first, None)
            if row is not None:
                self._cache_bytes -= len(row[1]) + _ROW_MEMORY_BYTES
            first += 1
        self._cache_first = first

    def _rotate(self) -> None:
        """Continue in a new journal, of the current write key, its pending rows moved first (under the lock).

        The new journal is made, then one transaction moves the pending rows and
        points the journal state at the new journal; the WAL is fsynced (the
        moved rows are then on disk), and the old journal deleted. A crash at
        any point leaves every message either in the database or in a journal
        the state points into, once. Raises ``OSError`` or ``sqlite3.Error``,
        with the old journal still in use.
        """
        home = self._home
        if home is None or self._writer is None:
            raise OSError(errno.EBADF, "the spool is closed")
        gen = self._journal_gen + 1
        path = os.path.join(home.path, journal.file_name(gen))
        fd, mapped = self._new_journal(home, gen)
        try:
            if self.fsync != "never":
                store.fsync_directory(home.path)
            self._record(self._next_id - 1, (gen, journal.HEADER_SIZE))
        except BaseException:
            if mapped is not None:
                mapped.close()
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        if self.fsync == "batch":
            self._sync_wal()  # "always": SQLite fsynced the commit
        old = os.path.join(home.path, journal.file_name(self._journal_gen))
        with self._fd_lock:
            self._close_journal()
            self._journal_fd, self._journal_map = fd, mapped
        self._journal_gen, self._journal_end = gen, journal.HEADER_SIZE
        self._journal_fingerprint = self._fingerprint
        with contextlib.suppress(OSError):
            os.unlink(old)

    def _new_journal(self, home: OwnerDirectory, gen: int) -> tuple[int, Optional[mmap.mmap]]:
        """Make journal ``gen`` in ``home``, its room reserved and mapped: its descriptor and mapping.

        On a disk too full for the room, a smaller one is tried; with no room for
        even ``_MIN_JOURNAL_BYTES``, the journal is not mapped (None) and each
        record is written with ``write()`` until the disk refuses one.
        """
        path = os.path.join(home.path, journal.file_name(gen))
        fd = journal.create(path, self._fingerprint)
        room = self._journal_room
        try:
            while True:
                try:
                    return fd, journal.reserve(fd, room)
                except OSError as exc:
                    os.ftruncate(fd, journal.HEADER_SIZE)  # give back what a failed reservation took
                    if exc.errno not in DISK_FULL_ERRNOS:
                        raise
                    if room <= _MIN_JOURNAL_BYTES:
                        return fd, None
                    room = max(_MIN_JOURNAL_BYTES, room // 4)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise

    def _close_journal(self) -> None:
        """Unmap and close the journal (under ``_fd_lock``); what was copied in stays in the file."""
        if self._journal_map is not None:
            self._journal_map.close()
            self._journal_map = None
        if self._journal_fd >= 0:
            os.close(self._journal_fd)
            self._journal_fd = -1

    # -- syncing -------------------------------------------------------------------

    def _wake_syncer(self) -> None:
        """Have the sync thread make its next pass (starting it the first time)."""
        self._dirty.set()
        if self._syncer is None:
            self._start_syncer()

    def _start_syncer(self) -> None:
        thread = threading.Thread(target=self._sync_loop, name="segment_lite-spool-sync", daemon=True)
        try:
            thread.start()
        except RuntimeError:
            if self.fsync == "batch":
                self._sync_files()  # no new threads (interpreter exit): sync on the caller's thread
            return
        self._syncer = thread

    def _sync_loop(self) -> None:
        unpublished = False  # written since the stats were last written
        last_published = 0.0
        while True:
            wait = None if not unpublished else max(0.0, last_published + STATS_INTERVAL_S - time.monotonic())
            if self._dirty.wait(wait):
                # Group the writes of the next few milliseconds into one fsync.
                delay = self._last_sync + SYNC_INTERVAL_S - time.monotonic()
                if delay > 0:
                    self._stop_syncing.wait(delay)
                self._dirty.clear()
                # Checked after the clear: close() sets the stop before it sets _dirty, so a
                # stop missed here comes with a _dirty that the next wait sees.
                if self._stop_syncing.is_set():
                    return  # close() moves and syncs what is left
                self._tend()
                self._last_sync = time.monotonic()
                unpublished = True
            if unpublished and time.monotonic() - last_published >= STATS_INTERVAL_S:
                self._publish_stats()
                last_published = time.monotonic()
                unpublished = False

    def _tend(self) -> None:
        """The sync thread's pass: move pending rows past ``MOVE_AT_BYTES``, replace a full journal, fsync."""
        with self._lock:
            if self._closed or self._forked_away or self._writer is None:
                return
            if self._pending_bytes >= MOVE_AT_BYTES:
                self._move_pending()
            if self._journal_end >= self._journal_limit:
                try:
                    self._rotate()
                except (OSError, sqlite3.Error) as exc:  # tried again at the next pass
                    log.error("spool: could not start a new journal in %s: %s", self.directory, exc)
            journal_dirty, wal_dirty = self._journal_dirty, self._wal_dirty
            self._journal_dirty = self._wal_dirty = False
        if self.fsync == "batch":
            self._sync_files(journal_dirty, wal_dirty)  # outside the lock: put never waits for the disk

    def _sync_files(self, journal_dirty: bool = True, wal_dirty: bool = True) -> None:
        """fdatasync the journal and the WAL (the ones written since): what they hold survives power loss."""
        if journal_dirty:
            with self._fd_lock:
                if self._journal_fd >= 0:
                    try:
                        store.fdatasync(self._journal_fd)
                        self.syncs += 1
                    except OSError as exc:
                        log.error("spool: fsync failed in %s: %s", self.directory, exc)
        if wal_dirty:
            self._sync_wal()

    def _sync_wal(self) -> None:
        """fsync the WAL: every transaction committed so far survives a power loss."""
        if self._wal_fd < 0:
            return
        try:
            store.fdatasync(self._wal_fd)
            self.syncs += 1
        except OSError as exc:
            log.error("spool: fsync failed in %s: %s", self.directory, exc)

    def _publish_stats(self) -> None:
        """Write what the spool holds for ``spool status``, which cannot open its database while we live."""
        home = self._home
        if home is None or self._forked_away:
            return
        with self._lock:
            contents = store.Contents(
                messages=self._queued + sum(taken.count for taken in self._in_flight.values()),
                nbytes=self._disk_bytes,
                oldest_ms=self._oldest_ms_locked(),
                pid=self._pid,
                hostname=_HOSTNAME,
                fingerprints=tuple(sorted(self._fingerprints)) if self._disk_bytes > 0 else (),
            )
        try:
            store.write_stats(home.path, contents)
        except OSError as exc:
            log.debug("spool: could not publish its counts in %s: %s", home.path, exc)

    def _oldest_ms_locked(self) -> Optional[int]:
        writer = self._writer
        if writer is None or self._disk_bytes <= 0:
            return None
        try:
            row = writer.execute(_OLDEST).fetchone()
        except sqlite3.Error:
            return None
        if row is None:  # none in the database: the oldest pending one
            row = self._rows.get(self._moved_upto + 1)
        return None if row is None else int(row[0])

    # -- delivering ----------------------------------------------------------------

    def take(self, max_count: int, max_bytes: int) -> Optional[Batch]:
        """The next batch: records cut short earlier first, then the rows in acceptance order.

        Rows kept in memory are handed out from there; older ones are read from the database.
        """
        with self._lock:
            if self._returned:
                return self._returned.popleft()
            reader = self._writer  # the one connection; the lock keeps put out while it reads
            if self._queued <= 0 or self._draining or self._closed or self._forked_away or reader is None:
                return None
            after = self._read_after
            count = max(1, min(max_count, self._queued))
            rows: Iterable[tuple[int, bytes]]
            if after >= self._cache_first - 1:
                kept = self._rows
                rows = ((row_id, kept[row_id][1]) for row_id in range(after + 1, after + 1 + count))
            else:
                try:
                    rows = reader.execute(_SELECT, (after, self._cache_first, count)).fetchall()
                except sqlite3.Error as exc:
                    log.error("spool: could not read from %s: %s", self.directory, exc)
                    return None
            items: list[bytes] = []
            nbytes = 0  # as a batch counts them: each item plus a comma
            last = after
            for row_id, body in rows:
                size = len(body) + 1
                if items and nbytes + size > max_bytes:
                    break
                items.append(body)
                nbytes += size
                last = row_id
            if not items:
                return None
            count = len(items)
            self._read_after = last
            batch = Batch(self._taken, items, nbytes)
            self._taken += count
            self._queued -= count
            self._queued_bytes -= nbytes - count
            disk_bytes = nbytes - count + count * ROW_OVERHEAD_BYTES
            self._in_flight[batch.seq] = _Taken(after + 1, last, count, disk_bytes)
            return batch

    def done(self, batch: Batch, keep: bool = False) -> None:
        """Settle ``batch``: its rows are recorded as delivered, or with ``keep`` held on to undelivered."""
        with self._lock:
            taken = self._in_flight.get(batch.seq)
            if taken is None:
                return
            if keep and not (self._draining or self._closed):
                self._returned.append(batch)  # cut short by a deadline: send it again
                self.wake.set()
                return
            del self._in_flight[batch.seq]
            if keep:
                if not taken.counted_as_kept:
                    self._kept += taken.count  # stays on disk for the next process
            elif self._closed or self._writer is None:
                if taken.counted_as_kept:  # settled after close: not left after all (sent again, though)
                    self._kept -= taken.count
            else:
                self._unrecorded.append((taken.first_id, taken.last_id))
                self._disk_bytes -= taken.disk_bytes
                self._record_settled(taken.last_id)
            self._settled.notify_all()
            if self._blocked:
                self._not_full.notify_all()

    def _record_settled(self, last_id: int) -> None:
        """Record the settled batches, up to ``last_id`` (under the lock); those a full disk refuses wait.

        A settlement is a write too: on a full disk SQLite cannot append it to
        the WAL. It is then recorded with a later batch, or, once everything
        accepted is settled, the journal and database are made again from
        nothing, which gives the disk back its space.
        """
        try:
            self._record(max(self._moved_upto, last_id))
        except sqlite3.Error as exc:
            if not self._all_settled() or not self._start_over():
                log.error("spool: could not record delivered messages in %s: %s", self.directory, exc)

    def _all_settled(self) -> bool:
        return not (self._queued or self._in_flight or self._returned)

    def _start_over(self) -> bool:
        """Replace the journal and database, every message in them settled, by empty ones (under the lock).

        The journals go first: a crash then leaves a database with nothing
        undelivered, never a journal without the state that says it is settled.
        False when the new ones cannot be made.
        """
        home = self._home
        if home is None:
            return False
        gen = self._journal_gen + 1
        self._release_database()
        try:
            for _, path in journal.journal_files(home.path):
                os.unlink(path)
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(home.database + suffix)
            self._open_database(home, gen)
        except (OSError, sqlite3.Error) as exc:
            self._open_error = exc
            log.error("spool: could not make the database in %s again: %s", home.path, exc)
            return False
        self._unrecorded.clear()
        self._rows.clear()
        self._cache_bytes = self._pending_bytes = 0
        self._moved_upto = self._next_id - 1
        self._cache_first = self._next_id
        return True

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
        """Stop handing out messages; what is still undelivered stays on disk for the next process.

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
                self._kept += taken.count
        if in_flight:
            for taken in self._in_flight.values():
                if not taken.counted_as_kept:
                    taken.counted_as_kept = True
                    self._kept += taken.count

    # -- sizes and counts ----------------------------------------------------------

    def qsize(self) -> int:
        """Messages waiting to be taken (including batches cut short, to be taken again)."""
        return self._queued + sum(len(batch) for batch in list(self._returned))

    def nbytes(self) -> int:
        """Message bytes waiting to be taken."""
        return self._queued_bytes

    def disk_bytes(self) -> int:
        """Bytes of undelivered messages, with ``ROW_OVERHEAD_BYTES`` each (what ``max_bytes`` bounds)."""
        return self._disk_bytes

    def accepted_count(self) -> int:
        """Messages numbered so far: those recovered at open, then those accepted here."""
        return self._accepted

    def pending_count(self) -> int:
        """Messages not yet settled: waiting, or out for delivery."""
        with self._lock:
            return self._queued + sum(taken.count for taken in self._in_flight.values())

    def recovered_count(self) -> int:
        """Messages earlier processes left in orphaned directories, adopted at open."""
        return self._recovered

    def kept_count(self) -> int:
        """Messages left on disk undelivered, for the next process (once draining or closed)."""
        return self._kept

    # -- losses --------------------------------------------------------------------

    def report_losses_to(self, ledger: Ledger) -> None:
        """Count unreadable orphans found at open in ``ledger`` as ``spool_corrupt``."""
        with self._lock:
            self._ledger = ledger
            losses, self._unreported = self._unreported, []
        for error in losses:
            ledger.drop("spool_corrupt", error, [], count=error.records)

    # -- closing -------------------------------------------------------------------

    def close(self) -> None:
        """Release the spool: undelivered messages stay on disk for the next process.

        Pending rows are moved into the database first. The owner directory (its
        journal too) is deleted when everything in it was delivered.
        """
        if self._forked_away:
            return
        self._stop_syncing.set()
        self._dirty.set()
        syncer = self._syncer
        if syncer is not None and syncer is not threading.current_thread():
            syncer.join()
        with self._lock:
            if self._closed:
                return
            self._leave_undelivered_locked(in_flight=True)
            self._closed = True
            remove = self._writer is not None and self._disk_bytes <= 0  # every row settled
            if not remove and self._writer is not None:
                self._move_pending()  # else the next process replays them from the journal
                if self.fsync == "batch":
                    self._sync_files()
            self._release(remove=remove)
            self._settled.notify_all()
            self._not_full.notify_all()
        _OPEN.discard(self)

    def _release(self, remove: bool) -> None:
        self._release_database()
        if self._home is not None:
            self._home.release(remove=remove)

    def _forget_after_fork(self) -> None:
        """In a forked child: let go of the parent's spool without touching its files or lock."""
        self._forked_away = True
        self._syncer = None
        if self._writer is not None:
            _never_free(self._writer)
        self._writer = None
        if self._wal_fd >= 0:
            os.close(self._wal_fd)
        self._wal_fd = -1
        self._close_journal()  # never written here: the parent appends on (unmapping is this process's)
        self._rows = {}
        if self._home is not None:
            self._home.abandon()

    def __repr__(self) -> str:
        return f"<DiskSpool {self.directory!r} queued={self._queued} fsync={self.fsync!r}>"


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _forget_parents_spools() -> None:
    pid = os.getpid()
    for spool in list(_OPEN):
        if spool._pid != pid:
            spool._forget_after_fork()
            _OPEN.discard(spool)


on_fork_in_child("spools", _forget_parents_spools)
