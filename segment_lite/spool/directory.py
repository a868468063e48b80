"""One owner directory of a spool: its lock, its segment files and its acknowledgement cursor.

A spool root holds one subdirectory per process that spooled into it::

    SPOOL_DIR/
        spool-4242-1f0c9a7e/    owned by process 4242 while it holds the lock
            lock                flock()ed by the owner; free once it exits or dies
            owner.json          which write key (a fingerprint, never the key) and process made it
            ack                 the acknowledgement cursor (see records.py)
            0000000000000001.seg
            0000000000000002.seg

A process always writes into a directory it creates, so it never appends after
another process's torn tail, and two processes never share a file. A directory
whose lock is free belongs to a process that has exited or died: a starting
client adopts it (if it was written with the same write key), delivers what it
holds and then deletes it.
"""

from __future__ import annotations

import collections
import errno
import fcntl
import json
import mmap
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from segment_lite.spool.records import (
    RECORD_HEADER_BYTES,
    SEGMENT_HEADER_BYTES,
    SEGMENT_MAGIC,
    AckFile,
    SegmentReader,
    segment_name,
    segment_number,
)

__all__ = [
    "DISK_FULL_ERRNOS",
    "OWNER_PREFIX",
    "Loss",
    "PendingBatch",
    "ReadResult",
    "Scan",
    "SpoolDirectory",
    "fdatasync",
    "fsync_directory",
    "list_segments",
    "owner_directories",
    "probe_lock",
    "read_cursor",
    "read_meta",
    "remove_stale_new_directories",
    "scan_segments",
    "start_cursor",
    "sync_files",
]

OWNER_PREFIX = "spool-"
LOCK_NAME = "lock"
META_NAME = "owner.json"
ACK_NAME = "ack"
_NEW_PREFIX = ".new-"
#: A directory still being created (under ``_NEW_PREFIX``) after this long was abandoned.
STALE_STAGING_S = 600.0
_OPEN_FLAGS = getattr(os, "O_CLOEXEC", 0)
#: The errors of a write that found no room: the disk (or the user's quota) is full.
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def owner_directories(root: str) -> list[str]:
    """The owner directories under ``root``, oldest name first."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return [
        os.path.join(root, name)
        for name in sorted(names)
        if name.startswith(OWNER_PREFIX) and os.path.isdir(os.path.join(root, name))
    ]


def read_meta(path: str) -> dict[str, Any]:
    """The owner.json of an owner directory ({} when missing or unreadable)."""
    try:
        with open(os.path.join(path, META_NAME), encoding="utf-8") as handle:
            meta = json.load(handle)
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _lock(path: str) -> Optional[int]:
    """Take the owner lock of ``path`` without waiting: its fd, or None when held or gone."""
    lock_path = os.path.join(path, LOCK_NAME)
    try:
        fd = os.open(lock_path, os.O_RDWR | _OPEN_FLAGS)  # never create: a missing lock means "being deleted"
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # The owner may have deleted the directory between our open and our lock.
        if os.fstat(fd).st_ino != os.stat(lock_path).st_ino:
            raise FileNotFoundError(lock_path)
    except OSError:
        os.close(fd)
        return None
    return fd


def probe_lock(path: str) -> bool:
    """True when a live process holds the owner lock of ``path`` (a shared lock is tried and released)."""
    try:
        fd = os.open(os.path.join(path, LOCK_NAME), os.O_RDONLY | _OPEN_FLAGS)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def fsync_directory(path: str) -> None:
    """Make the names created in directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | _OPEN_FLAGS)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_new_directories(root: str) -> None:
    """Delete directories a process died while creating (they never held a record).

    Only old ones: a directory being created right now is not locked yet.
    """
    try:
        names = os.listdir(root)
    except OSError:
        return
    now = time.time()
    for name in names:
        path = os.path.join(root, name)
        if not name.startswith(_NEW_PREFIX):
            continue
        try:
            if now - os.stat(path).st_mtime < STALE_STAGING_S:
                continue
        except OSError:
            continue
        fd = _lock(path)
        if fd is not None:
            _remove_tree(path)
            os.close(fd)


def _remove_tree(path: str) -> None:
    try:
        names = os.listdir(path)
    except OSError:
        return
    # The lock goes last: until then a racing adopter cannot take a half-deleted directory.
    for name in sorted(names, key=lambda n: n == LOCK_NAME):
        try:
            os.unlink(os.path.join(path, name))
        except OSError:
            pass
    try:
        os.rmdir(path)
    except OSError:
        pass


@dataclass
class Loss:
    """Records that could not be read back: how many, where, how many bytes."""

    records: int
    path: str
    offset: int
    nbytes: int


@dataclass
class Scan:
    """What an owner directory holds beyond its cursor."""

    records: int = 0
    nbytes: int = 0  # record bytes on disk, headers included
    oldest_ms: Optional[int] = None  # when the oldest pending record was accepted
    losses: list[Loss] = field(default_factory=list)

    @property
    def lost_records(self) -> int:
        """Records found unreadable."""
        return sum(loss.records for loss in self.losses)


@dataclass
class PendingBatch:
    """A batch taken from a directory and not yet acknowledged."""

    end: tuple[int, int]  # cursor just after its last record
    count: int
    disk_bytes: int
    settled: bool = False


@dataclass
class ReadResult:
    """Records read for one batch."""

    items: list[bytes]
    nbytes: int  # as a batch counts them: each item plus a comma
    disk_bytes: int
    end: tuple[int, int]
    lost: list[Loss]
    lost_records: int  # records this process wrote that could not be read back


class SpoolDirectory:
    """An owner directory held by this process: appends (when it is ours), reads, acknowledges.

    Not thread-safe on its own: the disk spool serialises appends under one lock
    and reads under another, and calls ``acknowledge`` under the first.
    """

    def __init__(self, path: str, lock_fd: int, *, segment_bytes: int, writable: bool) -> None:
        self.path = path
        self.lock_fd = lock_fd
        self.segment_bytes = segment_bytes
        self.writable = writable
        self.segments: list[int] = []
        self.segment_end: dict[int, int] = {}  # readable end of each sealed segment
        self.written: dict[int, int] = {}  # records this process appended, by segment
        self.in_flight: collections.deque[PendingBatch] = collections.deque()
        self.unacked = 0  # records here not yet settled (delivered or dropped)
        self.exhausted = False  # a read-only directory whose every record has been taken
        self.write_number = 0
        self.write_end = 0
        self.write_fd = -1
        self.write_capacity = 0  # bytes the segment being written can hold
        self._map: Optional[mmap.mmap] = None  # the segment being written, mapped
        self.retired_fds: list[int] = []  # finished write segments, to sync (per policy) and close
        self.new_file = False  # a segment file was created since the directory was last synced
        self._reader: Optional[SegmentReader] = None
        self._reader_number = 0
        self._peeked: Optional[tuple[bytes, tuple[int, int]]] = None
        ack_fd = os.open(os.path.join(path, ACK_NAME), os.O_RDWR | os.O_CREAT | _OPEN_FLAGS, 0o600)
        self.ack = AckFile(ack_fd)
        self._load()

    # -- opening -----------------------------------------------------------------

    @classmethod
    def create(cls, root: str, fingerprint: str, *, segment_bytes: int, sync: bool) -> SpoolDirectory:
        """Make and lock a fresh owner directory under ``root`` for this process to write into."""
        os.makedirs(root, exist_ok=True)
        name = f"{OWNER_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        staging = os.path.join(root, _NEW_PREFIX + name)
        os.mkdir(staging, 0o700)
        fd = -1
        try:
            fd = os.open(os.path.join(staging, LOCK_NAME), os.O_RDWR | os.O_CREAT | _OPEN_FLAGS, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            meta = {
                "format": 1,
                "write_key_fingerprint": fingerprint,
                "pid": os.getpid(),
                "hostname": socket.gethostname(),
                "created_ms": int(time.time() * 1000),
            }
            with open(os.path.join(staging, META_NAME), "w", encoding="utf-8") as handle:
                json.dump(meta, handle)
            # Visible under its final name only once locked: no one can adopt it half-made.
            final = os.path.join(root, name)
            os.rename(staging, final)
            if sync:
                fsync_directory(root)
        except BaseException:
            _remove_tree(staging)
            if fd >= 0:
                os.close(fd)
            raise
        return cls(final, fd, segment_bytes=segment_bytes, writable=True)

    @classmethod
    def adopt(cls, path: str, fingerprint: str, *, segment_bytes: int) -> Optional[SpoolDirectory]:
        """Lock an orphaned owner directory written for ``fingerprint``; None if live or another key's."""
        fd = _lock(path)
        if fd is None:
            return None
        if read_meta(path).get("write_key_fingerprint") != fingerprint:
            os.close(fd)
            return None
        try:
            return cls(path, fd, segment_bytes=segment_bytes, writable=False)
        except OSError:
            os.close(fd)
            raise

    def _load(self) -> None:
        self.segments = list_segments(self.path)
        cursor = self.ack.read() or start_cursor(self.segments)
        self.cursor = cursor
        self._read_from = cursor[0]  # the first segment not yet read through
        for number in [n for n in self.segments if n < cursor[0]]:
            self._delete_segment(number)  # delivered; the owner died before deleting it
        for number in self.segments:
            try:
                self.segment_end[number] = os.stat(self._segment_path(number)).st_size
            except FileNotFoundError:
                self.segment_end[number] = 0
        if self.segments:
            self.write_number = self.segments[-1]

    def _segment_path(self, number: int) -> str:
        return os.path.join(self.path, segment_name(number))

    # -- writing -----------------------------------------------------------------

    def append(self, record: bytes) -> None:
        """Append one record; raises OSError (and leaves no partial record) on failure.

        The record is copied into the segment's shared memory map, which is the
        page cache itself: it survives the process being killed, and costs no
        system call (a write(2) per message would also hand the GIL to another
        thread every time). Where a file cannot be mapped, it is written with
        pwrite(2) instead.
        """
        size = len(record)
        end = self.write_end + size
        if self.write_fd < 0 or end > self.write_capacity:
            self._open_next_segment(size)
            end = self.write_end + size
        mapped = self._map
        if mapped is not None:
            mapped[self.write_end : end] = record
        else:
            try:
                written = os.pwrite(self.write_fd, record, self.write_end)
            except OSError:
                self._truncate_to_last_record()
                raise
            if written != size:
                self._truncate_to_last_record()
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.write_end = end
        self.written[self.write_number] += 1

    def reclaim(self) -> bool:
        """Delete the segment being written when every record in it is settled; False if none can go.

        On a full disk this frees the space of delivered records that would
        otherwise stay until the segment filled up.
        """
        if self.write_fd < 0 or self.write_end <= SEGMENT_HEADER_BYTES or self.unacked or self.in_flight:
            return False
        self._unmap()
        try:
            # Truncated, not just unlinked: readers and the syncer may still hold it open.
            os.ftruncate(self.write_fd, 0)
            os.unlink(self._segment_path(self.write_number))
        except OSError:
            pass
        self.segment_end[self.write_number] = self.write_end
        self.retired_fds.append(self.write_fd)
        self.write_fd = -1  # the next append starts a new segment
        return True

    def _truncate_to_last_record(self) -> None:
        try:
            os.ftruncate(self.write_fd, self.write_end)
        except OSError:
            pass  # a reader skips a partial record as a torn tail

    def _unmap(self) -> None:
        if self._map is not None:
            self._map.close()  # its pages stay in the page cache; an fsync of the file writes them
            self._map = None

    def _open_next_segment(self, record_size: int) -> None:
        number = self.write_number + 1
        path = self._segment_path(number)
        needed = SEGMENT_HEADER_BYTES + record_size
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o600)
        try:
            mapped, capacity = _prepare_segment(fd, max(self.segment_bytes, needed), needed)
        except OSError:
            os.close(fd)
            try:
                os.unlink(path)
            except OSError:
                pass
            raise
        self._unmap()
        if self.write_fd >= 0:
            # Give back the space reserved beyond the last record: a finished segment ends
            # where its records end (only a crash leaves the reserved zeros behind).
            self._truncate_to_last_record()
            self.segment_end[self.write_number] = self.write_end
            self.retired_fds.append(self.write_fd)
        self.segments.append(number)
        self.written[number] = 0
        self.write_number, self.write_fd, self.write_end = number, fd, SEGMENT_HEADER_BYTES
        self._map, self.write_capacity = mapped, capacity
        self.new_file = True

    # -- reading -----------------------------------------------------------------

    def _sealed(self, number: int) -> bool:
        return not self.writable or number != self.write_number

    def read(self, max_count: int, max_bytes: int, write_end: int) -> ReadResult:
        """Read up to ``max_count`` records totalling ``max_bytes`` (at least one when any is readable).

        ``write_end`` is how far the segment being written may be read.
        """
        items: list[bytes] = []
        nbytes = 0  # as a batch counts them: each item plus a comma
        lost: list[Loss] = []
        end = self.cursor
        if self._peeked is not None:
            payload, end = self._peeked
            self._peeked = None
            items.append(payload)
            nbytes = len(payload) + 1
        while len(items) < max_count:
            reader = self._reader
            if reader is not None:
                # The common case: whole records already read into the buffer.
                taken = len(items)
                nbytes, full = reader.read_buffered(items, max_count, max_bytes, nbytes)
                if len(items) > taken:
                    end = (self._reader_number, reader.position)
                if full or len(items) >= max_count:
                    break
            record = self._next_record(write_end, lost)  # refills, moves on, skips what is unreadable
            if record is None:
                break
            payload, position = record
            size = len(payload) + 1
            if items and nbytes + size > max_bytes:
                self._peeked = record
                break
            items.append(payload)
            nbytes += size
            end = position
        disk_bytes = nbytes - len(items) + RECORD_HEADER_BYTES * len(items)
        return ReadResult(items, nbytes, disk_bytes, end, lost, sum(loss.records for loss in lost))

    def _next_record(self, write_end: int, lost: list[Loss]) -> Optional[tuple[bytes, tuple[int, int]]]:
        """The next readable record and the cursor just after it; None when there is none yet."""
        while True:
            reader = self._reader or self._open_reader(write_end)
            if reader is None:
                return None
            number = self._reader_number
            sealed = self._sealed(number)
            if not sealed:
                reader.end = write_end
            elif not reader.sealed:  # the writer has moved on to a new segment since we opened it
                reader.sealed = True
                reader.end = self.segment_end.get(number, reader.end)
            record = reader.next()
            if record is not None:
                return record[0], (number, reader.position)
            if not sealed or not reader.at_end():
                return None
            loss = self._finish_segment(number, reader)
            if loss is not None:
                lost.append(loss)

    def _open_reader(self, write_end: int) -> Optional[SegmentReader]:
        """Open the first segment at or after the cursor that is still to be read."""
        later = [n for n in self.segments if n >= self._read_from]
        if not later:
            if not self.writable:
                self.exhausted = True
            return None
        number = later[0]
        offset = self.cursor[1] if number == self.cursor[0] else SEGMENT_HEADER_BYTES
        try:
            fd = os.open(self._segment_path(number), os.O_RDONLY | _OPEN_FLAGS)
        except FileNotFoundError:
            self.segments.remove(number)
            return self._open_reader(write_end)
        end = write_end if not self._sealed(number) else self.segment_end.get(number, 0)
        self._reader = SegmentReader(self._segment_path(number), fd, offset, end, self._sealed(number))
        self._reader_number = number
        return self._reader

    def _finish_segment(self, number: int, reader: SegmentReader) -> Optional[Loss]:
        """Leave a fully read segment; the records of ours it could not give back are a loss."""
        reader.close()
        self._reader = None
        self._read_from = number + 1
        wrote = self.written.get(number)
        if wrote is None or reader.records_read >= wrote:
            return None  # not ours (losses were counted when it was adopted), or nothing lost
        offset = reader.first_loss_offset or 0
        return Loss(wrote - reader.records_read, reader.path, offset, reader.lost_bytes)

    # -- acknowledging -------------------------------------------------------------

    def settle(self, entry: PendingBatch) -> int:
        """Mark a batch settled; move the cursor over every settled batch in order. Returns bytes freed."""
        entry.settled = True
        freed = 0
        newest: Optional[tuple[int, int]] = None
        while self.in_flight and self.in_flight[0].settled:
            done = self.in_flight.popleft()
            freed += done.disk_bytes
            newest = done.end
        if newest is not None:
            self.acknowledge(newest)
        return freed

    def acknowledge(self, cursor: tuple[int, int]) -> None:
        """Record ``cursor`` and delete the segments wholly before it."""
        self.cursor = cursor
        try:
            self.ack.write(*cursor)
        except OSError:
            pass  # a stale cursor only means those records are sent again (deduplicated by messageId)
        for number in [n for n in self.segments if n < cursor[0]]:
            self._delete_segment(number)

    def _delete_segment(self, number: int) -> None:
        try:
            os.unlink(self._segment_path(number))
        except OSError:
            pass
        if number in self.segments:
            self.segments.remove(number)
        self.segment_end.pop(number, None)
        self.written.pop(number, None)

    def scan(self) -> Scan:
        """Read every record beyond the cursor without taking any (to adopt the directory)."""
        return scan_segments(self.path, self.segments, self.cursor, live=False)

    # -- syncing and closing ---------------------------------------------------------

    def sync(self, cursor: bool = False) -> None:
        """fsync what was written: retired segments (then closed), the current one, new names.

        ``cursor`` syncs the acknowledgement cursor too (a stale one after a power
        loss only means records sent again, so it is synced at close).
        """
        retired, self.retired_fds = self.retired_fds, []
        sync_files(self.path, retired, self.write_fd, self.new_file)
        self.new_file = False
        if cursor and self.ack.fd >= 0:
            fdatasync(self.ack.fd)

    def close_retired(self) -> None:
        """Close finished write segments without syncing them."""
        retired, self.retired_fds = self.retired_fds, []
        for fd in retired:
            os.close(fd)

    def close(self, remove: bool) -> None:
        """Release the directory: delete it first when ``remove`` (everything in it was delivered)."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._unmap()
        if self.write_fd >= 0 and not remove:
            self._truncate_to_last_record()  # drop the space reserved beyond the last record
        self.close_retired()
        for fd in (self.write_fd, self.ack.fd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.write_fd = self.ack.fd = -1
        if remove:
            _remove_tree(self.path)
        self._close_lock()

    def abandon(self) -> None:
        """Close every descriptor without touching the files or the lock's owner (in a forked child).

        The lock is shared with the parent's descriptor: closing ours leaves the
        parent holding it, where an explicit unlock would release it for both.
        """
        fds = [self.write_fd, self.ack.fd, self.lock_fd, *self.retired_fds]
        if self._map is not None:
            self._map.close()  # unmapped here only: the parent's mapping is its own
            self._map = None
        if self._reader is not None:
            fds.append(self._reader.fd)
            self._reader.fd = -1
        self.retired_fds = []
        self.write_fd = self.ack.fd = self.lock_fd = -1
        for fd in fds:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _close_lock(self) -> None:
        if self.lock_fd >= 0:
            os.close(self.lock_fd)  # releases the lock
            self.lock_fd = -1


def list_segments(path: str) -> list[int]:
    """The segment numbers in owner directory ``path``, in order."""
    numbers = [segment_number(name) for name in os.listdir(path)]
    return sorted(n for n in numbers if n is not None)


def start_cursor(segments: list[int]) -> tuple[int, int]:
    """The cursor of a directory with no acknowledgement yet: its first record."""
    return (segments[0] if segments else 1, SEGMENT_HEADER_BYTES)


def read_cursor(path: str) -> Optional[tuple[int, int]]:
    """The acknowledgement cursor of owner directory ``path``, read without changing anything."""
    try:
        fd = os.open(os.path.join(path, ACK_NAME), os.O_RDONLY | _OPEN_FLAGS)
    except FileNotFoundError:
        return None
    try:
        return AckFile(fd).read()
    finally:
        os.close(fd)


def scan_segments(path: str, segments: list[int], cursor: tuple[int, int], live: bool) -> Scan:
    """Read every record of ``segments`` beyond ``cursor``: how many, their bytes, the oldest, the losses.

    ``live``: the owner may still be appending, so a partial last record is one
    being written, not a torn tail.
    """
    result = Scan()
    for index, number in enumerate(segments):
        if number < cursor[0]:
            continue
        segment_path = os.path.join(path, segment_name(number))
        try:
            fd = os.open(segment_path, os.O_RDONLY | _OPEN_FLAGS)
        except FileNotFoundError:
            continue
        sealed = not (live and index == len(segments) - 1)
        offset = cursor[1] if number == cursor[0] else SEGMENT_HEADER_BYTES
        reader = SegmentReader(segment_path, fd, offset, os.fstat(fd).st_size, sealed)
        try:
            while True:
                record = reader.next()
                if record is None:
                    break
                payload, accepted_ms = record
                result.records += 1
                result.nbytes += RECORD_HEADER_BYTES + len(payload)
                if result.oldest_ms is None:
                    result.oldest_ms = accepted_ms
        finally:
            reader.close()
        if reader.lost_records:
            offset = reader.first_loss_offset or 0
            result.losses.append(Loss(reader.lost_records, segment_path, offset, reader.lost_bytes))
    return result


def _prepare_segment(fd: int, wanted: int, needed: int) -> tuple[Optional[mmap.mmap], int]:
    """Reserve and map a new segment file: its map and capacity (None: write it with pwrite).

    The blocks are reserved up front (posix_fallocate), so a full disk is an
    error here rather than a SIGBUS on a later copy into the map. With little
    room left the segment is made smaller, down to ``needed`` bytes.
    """
    size = wanted
    while True:
        try:
            os.posix_fallocate(fd, 0, size)
            break
        except OSError as exc:
            if exc.errno not in DISK_FULL_ERRNOS:
                return _unmapped_segment(fd, wanted)  # not supported here: plain writes
            if size <= needed:
                raise
            size = max(needed, size // 4)
        except AttributeError:  # pragma: no cover - platforms without posix_fallocate
            return _unmapped_segment(fd, wanted)
    try:
        mapped = mmap.mmap(fd, size)
    except (OSError, ValueError):
        os.ftruncate(fd, 0)
        return _unmapped_segment(fd, wanted)
    mapped[:SEGMENT_HEADER_BYTES] = SEGMENT_MAGIC
    return mapped, size


def _unmapped_segment(fd: int, capacity: int) -> tuple[None, int]:
    if os.pwrite(fd, SEGMENT_MAGIC, 0) != SEGMENT_HEADER_BYTES:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return None, capacity


def sync_files(path: str, retired: list[int], write_fd: int, new_file: bool) -> None:
    """fsync the writes of owner directory ``path``: ``retired`` segments (then closed), the one
    being written (``write_fd``, -1 for none), and its names when ``new_file`` was created."""
    for fd in retired:
        try:
            fdatasync(fd)
        finally:
            os.close(fd)
    if write_fd >= 0:
        fdatasync(write_fd)
    if new_file:
        fsync_directory(path)


def fdatasync(fd: int) -> None:
    """Flush a file's data to disk (fsync where fdatasync is missing)."""
    sync = getattr(os, "fdatasync", os.fsync)
    sync(fd)
