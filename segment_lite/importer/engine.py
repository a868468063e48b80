"""The import engine: feeds rows to a blocking client, routes rejections, confirms delivery chunk by chunk."""

from __future__ import annotations

import collections
import functools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional

from segment_lite.cli_common import Progress, Snapshot
from segment_lite.client import Client
from segment_lite.errors import APIError, EncodeError, MessageTooLargeError, SegmentLiteError, ValidationError
from segment_lite.importer.convert import RowConverter
from segment_lite.importer.errors import ImportConfigError, RowError
from segment_lite.importer.options import ImportOptions
from segment_lite.importer.sources import Source
from segment_lite.importer.state import RejectsWriter
from segment_lite.importer.summary import ImportSummary
from segment_lite.ledger import WARNING_REASONS
from segment_lite.limits import MAX_BATCH_MESSAGES

__all__ = [
    "CLIENT_DEFAULTS",
    "FATAL_STATUSES",
    "MAX_PENDING_CHUNKS",
    "ImportEngine",
    "SettledCallback",
    "make_client",
]

#: Chunks that may be sent but not yet confirmed; the reader waits beyond this.
MAX_PENDING_CHUNKS = 2
#: Where an import's client differs from ``ClientOptions``' defaults: big batches, a deep queue
#: that blocks instead of dropping (``block_timeout`` None: for as long as it takes).
CLIENT_DEFAULTS: dict[str, Any] = {
    "max_queue_size": 20000,
    "upload_size": 500,
    "max_batch_size": MAX_BATCH_MESSAGES,
    "upload_interval": 0.05,
    "on_full": "block",
    "shutdown_timeout": None,
}
#: Statuses that mean the whole import is misdirected (write key, host), not that a row is bad.
FATAL_STATUSES = frozenset({401, 403, 404})


class _Stop(SegmentLiteError):
    """Raised by :meth:`ImportEngine.run_source` to end an import early (max errors, delivery failed)."""


class _Chunk:
    """Rows read together and confirmed together, with the rejects records they produced.

    A chunk's records are written to the rejects file only when the chunk is
    done, just before the checkpoint that covers it: the file then holds the
    records of exactly the rows a checkpoint covers, in order, and a resume
    can cut it back to that length.
    """

    __slots__ = ("rejects", "rows")

    def __init__(self) -> None:
        self.rows: dict[str, tuple[Source, int, Any]] = {}  # messageId -> where the row came from
        self.rejects: list[bytes] = []


@dataclass
class _Pending:
    target: int  # the client's accepted count when the chunk ended
    index: int  # file index
    line: int  # last line of the chunk
    complete: bool  # the chunk ends its file
    chunk: _Chunk
    digest: Optional[str]  # of the file's rows up to ``line`` (see Source.digest)


#: Receives the chunks just confirmed, oldest first, as (file index, last line, ends the file,
#: digest of the file's rows up to that line or None).
SettledCallback = Callable[[list[tuple[int, int, bool, Optional[str]]]], None]


class ImportEngine:
    """Feeds rows to a client it makes from ``options`` and keeps the books.

    Shared by file imports (``run_import``) and in-memory rows (``import_rows``,
    Spark partitions). The client reports its drops to :meth:`on_error`, and a
    ``before_send`` hook that drops a row tells the engine so (see
    :func:`make_client`).
    """

    def __init__(
        self,
        options: ImportOptions,
        converter: RowConverter,
        rejects: RejectsWriter,
        *,
        progress: Progress,
        total_bytes: Optional[int] = None,
        on_settled: Optional[SettledCallback] = None,
    ) -> None:
        self.converter = converter
        self.rejects = rejects
        self.dry_run = options.dry_run
        self.max_errors = options.max_errors
        self.shard = options.shard_spec
        self.chunk_size = options.chunk_size
        self.progress = progress
        self.id_salt = options.id_salt
        self.total_bytes = total_bytes
        self.on_settled = on_settled
        self.interrupt_timeout = options.interrupt_timeout
        self.sending = not options.dry_run

        self.rows_read = 0
        self.sent = 0
        self.rejected = 0
        self.rejected_by_server = 0
        self.skipped_resume = 0
        self.skipped_shard = 0
        self.filtered = 0
        self._just_filtered = False
        self.stop_reason: Optional[str] = None
        self.fatal_error: Optional[str] = None
        self.fatal_pos: Optional[tuple[int, int]] = None

        self._lock = threading.Lock()
        self._closing = False
        self._pending: collections.deque[_Pending] = collections.deque()
        self._chunk = _Chunk()
        self._chunks: collections.deque[_Chunk] = collections.deque([self._chunk])
        self._rejects_done = False  # every chunk's records written: later ones go straight to the file
        self._rows_in_chunk = 0
        self._last: Optional[tuple[int, int]] = None
        self._bytes_done = 0
        self._skipped_bytes = 0
        self._skipping_s = 0.0
        self._source: Optional[Source] = None
        self._started = time.monotonic()
        self._next_tick = self._started + progress.interval_s
        self.client = make_client(options, self.on_error, self._note_filtered)
        client = self.client
        self._methods: dict[str, Callable[..., tuple[bool, Optional[dict[str, Any]]]]] = {
            "track": client.track,
            "identify": client.identify,
            "group": client.group,
            "alias": client.alias,
            "page": client.page,
            "screen": client.screen,
        }

    # -- the client's error callback (sender thread) -------------------------------

    def on_error(self, exc: BaseException, messages: list[Any]) -> None:
        """Route the client's drops: server rejections to the rejects file, the rest to a stop."""
        if isinstance(exc, (ValidationError, EncodeError)):
            return  # refused at the call: the reading loop catches the same exception
        if isinstance(exc, APIError) and exc.status not in FATAL_STATUSES:
            reason = f"HTTP {exc.status} {exc.code}: {exc.message}"
            for message in messages:
                mid = message.get("messageId") if isinstance(message, dict) else None
                found = self._lookup(mid)
                # A message no chunk knows is recorded as it was sent, without file or line.
                chunk: Optional[_Chunk] = None
                file, line, row = "", None, message
                if found is not None:
                    chunk, (source, line, raw) = found
                    file, row = source.path, source.original(raw)
                record = self.rejects.encode(
                    file=file,
                    line=line,
                    stage="server",
                    reason=reason,
                    field=None,
                    row=row,
                    status=exc.status,
                    messageId=mid,
                )
                self._keep_reject(chunk, record)
            with self._lock:
                self.rejected_by_server += len(messages)
                self._check_max_errors()
            return
        # Undelivered (retries exhausted, write key refused, dropped at shutdown):
        # nothing from the first of these messages on may be confirmed.
        first: Optional[tuple[int, int]] = None
        for message in messages:
            mid = message.get("messageId") if isinstance(message, dict) else None
            position = self._position(mid)
            if first is None or position < first:
                first = position
        with self._lock:
            if first is not None and (self.fatal_pos is None or first < self.fatal_pos):
                self.fatal_pos = first
            if self._closing:
                return  # dropped because the import is stopping: counted as undelivered
            if self.fatal_error is None:
                if isinstance(exc, APIError):
                    self.fatal_error = (
                        f"the server refused the request (HTTP {exc.status} {exc.code}: {exc.message});"
                        " check the write key and the host"
                    )
                else:
                    self.fatal_error = f"{type(exc).__name__}: {exc}"
            self.stop_reason = self.stop_reason or "delivery_failed"

    def _lookup(self, mid: Any) -> Optional[tuple[_Chunk, tuple[Source, int, Any]]]:
        if mid is None:
            return None
        key = str(mid)
        with self._lock:
            chunks = list(self._chunks)
        for chunk in chunks:
            found = chunk.rows.get(key)
            if found is not None:
                return chunk, found
        return None

    def _position(self, mid: Any) -> tuple[int, int]:
        found = self._lookup(mid)
        if found is None:
            return (-1, -1)  # unknown: confirm nothing further
        source, line, _ = found[1]
        return (source.index, line)

    def _keep_reject(self, chunk: Optional[_Chunk], record: bytes) -> None:
        """Hold ``record`` until ``chunk`` (None: the one being read) is done; write it once all are."""
        with self._lock:
            if not self._rejects_done:
                (chunk or self._chunk).rejects.append(record)
                return
        self.rejects.append([record])

    def _check_max_errors(self) -> None:
        if self.max_errors is not None and self.rejected + self.rejected_by_server > self.max_errors:
            self.stop_reason = self.stop_reason or "max_errors"

    # -- reading --------------------------------------------------------------------

    def _reject(self, source: Source, line: int, raw: Any, exc: Exception) -> None:
        if isinstance(exc, RowError):
            reason, path, stage = exc.reason, exc.field, "parse"
        else:
            reason = str(exc)
            path = "message" if isinstance(exc, MessageTooLargeError) else getattr(exc, "path", None)
            stage = "validate"
        try:
            row = source.original(raw)
        except (ValueError, TypeError, OverflowError, RecursionError):  # as unreadable as the row
            row = repr(raw)[:10_000]
        record = self.rejects.encode(
            file=source.path, line=line, stage=stage, reason=reason, field=path, row=row
        )
        self._keep_reject(None, record)
        with self._lock:
            self.rejected += 1
            self._check_max_errors()

    def run_source(
        self,
        index: int,
        source: Source,
        skip_upto: int = 0,
        converter: Optional[RowConverter] = None,
        skip_digest: Optional[str] = None,
    ) -> None:
        """Send every row of ``source`` after line ``skip_upto``; raises ``_Stop`` to end the import early.

        With ``skip_digest`` (what :meth:`Source.digest` gave for ``skip_upto``
        when that progress was checkpointed), the skipped rows are checked
        against it before any row after them is sent: ``ImportConfigError`` if
        they changed.
        """
        source.index = index
        self._source = source
        methods = self._methods
        convert = (converter or self.converter).convert
        decode = source.decode
        make_id = source.id_maker(self.id_salt)
        shard_n = self.shard[1] if self.shard else 1
        shard_r = self.shard[0] - 1 if self.shard else 0
        chunk_size = self.chunk_size
        sending = self.sending
        last_line = 0
        # A resume skips rows first (in this input or an earlier one): note where that ends.
        after_skipped = not self._skipping_s and (skip_upto > 0 or self.skipped_resume > 0)
        verify = skip_digest is not None and skip_upto > 0
        for line, raw in source.records():
            self.rows_read += 1
            last_line = line
            if line <= skip_upto:
                self.skipped_resume += 1
                continue
            if verify:
                _verify_skipped(source, skip_upto, skip_digest)
                verify = False
            if after_skipped:
                self._end_of_skipping(source)
                after_skipped = False
            if shard_n > 1 and (line - 1) % shard_n != shard_r:
                self.skipped_shard += 1
            else:
                try:
                    method, kwargs = convert(decode(raw))
                    mid = kwargs["message_id"]
                    if mid is None:
                        mid = kwargs["message_id"] = make_id(line, source.content(raw))
                    if sending:
                        self._chunk.rows[str(mid)] = (source, line, raw)
                    self._just_filtered = False
                    queued, _ = methods[method](**kwargs)
                except (RowError, ValidationError, EncodeError) as exc:
                    self._reject(source, line, raw, exc)
                except (ValueError, TypeError, OverflowError, RecursionError) as exc:
                    # A row no check foresaw is one rejected row, its exception named, never the end
                    # of the import.
                    reason = f"cannot make a message of the row: {type(exc).__name__}: {str(exc)[:200]}"
                    self._reject(source, line, raw, RowError(reason))
                else:
                    if queued:
                        self.sent += 1
                    elif self._just_filtered:
                        self.filtered += 1
                    else:
                        self._not_queued(index, line)
            self._last = (index, line)
            self._rows_in_chunk += 1
            if self._rows_in_chunk >= chunk_size:
                self._boundary(index, line, False)
            if not self.rows_read & 255 and time.monotonic() >= self._next_tick:
                self._tick()
            if self.stop_reason is not None:
                raise _Stop
        if verify:  # the input ended within the rows the checkpoint confirms
            _verify_skipped(source, skip_upto, skip_digest)
        self._last = (index, last_line)
        self._boundary(index, last_line, True)
        if source.size is not None:
            self._bytes_done += source.size
        self._source = None

    def _end_of_skipping(self, source: Source) -> None:
        """This run's first row after those a resume skipped: progress from here on is this run's."""
        self._skipping_s = max(1e-9, time.monotonic() - self._started)
        if self.total_bytes is not None:
            self._skipped_bytes = self._bytes_done + (source.position() or 0)

    def _note_filtered(self) -> None:
        """A ``before_send`` hook just dropped the message being sent (called on the reading thread)."""
        self._just_filtered = True

    def _not_queued(self, index: int, line: int) -> None:
        """The client refused a message it should have taken (queue full, shut down): stop."""
        with self._lock:
            self.stop_reason = self.stop_reason or "delivery_failed"
            self.fatal_error = self.fatal_error or "the client refused a message (queue full or shut down)"
            self.fatal_pos = min(self.fatal_pos or (index, line), (index, line))
        raise _Stop

    # -- a whole run ------------------------------------------------------------------

    def run(self, read: Callable[[], None], *, interruptible: bool = False) -> str:
        """Call ``read`` (which feeds rows through :meth:`run_source`), settle, shut down; the status.

        The status is ``completed``, ``max_errors`` or ``delivery_failed``; with
        ``interruptible``, a KeyboardInterrupt ends the run as ``interrupted``
        (what was in flight is flushed for up to ``interrupt_timeout`` seconds),
        otherwise it propagates once the client is shut down. The rejects file
        and the progress reporter are closed in every case.
        """
        status = "completed"
        try:
            try:
                read()
                self.finish()
            except _Stop:
                status = self.stop_reason or "delivery_failed"
                self.finish_stopped(self.interrupt_timeout if status == "max_errors" else 0.0)
            except KeyboardInterrupt:
                if not interruptible:
                    raise
                status = "interrupted"
                self.finish_stopped(self.interrupt_timeout)
            except ImportConfigError:
                self.finish_stopped(self.interrupt_timeout)
                raise
            if status == "completed" and self.fatal_error is not None:
                status = "delivery_failed"
        finally:
            self.close(self.interrupt_timeout if status == "completed" else 0.0)
            self.rejects.close()
            self.progress.close(self.snapshot())
        return status

    # -- confirming delivery --------------------------------------------------------

    def _boundary(self, index: int, line: int, complete: bool) -> None:
        """Close the chunk, confirm what has settled, and wait while too many chunks are pending."""
        self._close_chunk(index, line, complete)
        self._advance(block=False)
        while len(self._pending) > MAX_PENDING_CHUNKS:
            self._advance(block=True)

    def _close_chunk(self, index: int, line: int, complete: bool) -> None:
        """End the current chunk at ``line`` of source ``index``; it is confirmed once settled."""
        target = self.client.mark() if self.sending else 0
        source = self._source
        digest = source.digest(line) if source is not None and source.index == index else None
        with self._lock:
            self._pending.append(_Pending(target, index, line, complete, self._chunk, digest))
            self._chunk = _Chunk()
            self._chunks.append(self._chunk)
        self._rows_in_chunk = 0

    def _settled(self, target: int, timeout: float) -> bool:
        if not self.sending:
            return True
        return self.client.wait_settled(target, timeout)

    def _advance(self, block: bool) -> None:
        """Confirm the chunks whose messages are all settled, oldest first; checkpoint the newest.

        Their rejects records are written first, so the checkpoint covers them;
        records of chunks that cannot be confirmed (past a delivery failure)
        are written after it.
        """
        confirmed: list[tuple[int, int, bool, Optional[str]]] = []
        unconfirmed_rejects: list[bytes] = []
        while self._pending:
            pending = self._pending[0]
            if block:
                while not self._settled(pending.target, 0.25):
                    self._tick()
                block = False
            elif not self._settled(pending.target, 0):
                break
            with self._lock:
                self._pending.popleft()
                try:
                    self._chunks.remove(pending.chunk)
                except ValueError:
                    pass
                records, pending.chunk.rejects = pending.chunk.rejects, []
                fatal = self.fatal_pos
            if fatal is None or (pending.index, pending.line) < fatal:
                confirmed.append((pending.index, pending.line, pending.complete, pending.digest))
                self.rejects.append(records)
            else:
                unconfirmed_rejects.extend(records)
        if confirmed and self.on_settled is not None:
            self.rejects.flush()
            self.on_settled(confirmed)
        self.rejects.append(unconfirmed_rejects)

    def _flush(self, timeout: Optional[float]) -> bool:
        """Wait (showing progress) until everything sent is settled; False if ``timeout`` passed."""
        if not self.sending:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = 0.25 if deadline is None else max(0.0, min(0.25, deadline - time.monotonic()))
            if self.client.flush(step):
                return True
            self._tick()
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def finish_stopped(self, flush_timeout: Optional[float]) -> None:
        """After an early stop: settle what was sent (bounded), drop the rest, confirm what can be."""
        if self._last is not None:
            index, line = self._last
            self._close_chunk(index, line, complete=False)  # not _boundary: nothing waits here
        settled = False
        if self.stop_reason != "delivery_failed":
            try:
                settled = self._flush(flush_timeout)
            except KeyboardInterrupt:
                settled = False
        if not settled:
            self._shutdown(0.0)
        self._advance(block=False)

    def finish(self) -> None:
        """After the last row: wait for every message to be settled and confirm the last chunks."""
        self._flush(None)
        self._advance(block=False)

    def _shutdown(self, timeout: Optional[float]) -> None:
        self._closing = True
        if self.sending:
            self.client.shutdown(timeout)

    def close(self, timeout: Optional[float]) -> None:
        """Shut the client down (what is still undelivered after ``timeout`` is dropped, and counted),
        then write the rejects records of chunks never confirmed."""
        self._shutdown(timeout)
        with self._lock:
            self._rejects_done = True
            leftovers = [record for chunk in self._chunks for record in chunk.rejects]
            for chunk in self._chunks:
                chunk.rejects = []
        self.rejects.append(leftovers)

    # -- progress ---------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The current counts."""
        delivered = int(self.client.stats()["delivered"]) if self.sending else 0
        position: Optional[int] = None
        if self.total_bytes is not None:
            current = self._source.position() if self._source is not None else 0
            position = self._bytes_done + (current or 0)
        return Snapshot(
            elapsed_s=time.monotonic() - self._started,
            rows_read=self.rows_read,
            sent=self.sent,
            delivered=delivered,
            rejected=self.rejected + self.rejected_by_server,
            skipped=self.skipped_resume + self.skipped_shard,
            position=position,
            total_bytes=self.total_bytes,
            dry_run=self.dry_run,
            skipped_bytes=self._skipped_bytes,
            skipping_s=self._skipping_s,
        )

    def _tick(self) -> None:
        now = time.monotonic()
        if now < self._next_tick:
            return
        self._next_tick = now + self.progress.interval_s
        self.progress.update(self.snapshot())

    def summary(self, files: Sequence[str], status: str) -> ImportSummary:
        """The :class:`ImportSummary` of this run."""
        stats = self.client.stats() if self.sending else None
        delivered = int(stats["delivered"]) if stats else 0
        undelivered = max(0, self.sent - delivered - self.rejected_by_server) if self.sending else 0
        return ImportSummary(
            files=list(files),
            rows_read=self.rows_read,
            sent=self.sent,
            delivered=delivered,
            rejected=self.rejected,
            rejected_by_server=self.rejected_by_server,
            undelivered=undelivered,
            skipped_resume=self.skipped_resume,
            skipped_shard=self.skipped_shard,
            filtered=self.filtered,
            elapsed_s=time.monotonic() - self._started,
            dry_run=self.dry_run,
            status=status,
            error=self.fatal_error,
            rejects=self.rejects.path,
            shard=self.shard,
        )


def _verify_skipped(source: Source, line: int, expected: Optional[str]) -> None:
    """Refuse to go on when the rows a checkpoint confirmed (lines 1 to ``line``) are not those read now."""
    if source.digest(line) != expected:
        raise ImportConfigError(
            f"{source.path} changed since the checkpoint: its first {line:,} lines, which the checkpoint"
            " confirms were imported, are not the same (lines inserted, deleted or edited there would be"
            " skipped or sent again under other messageIds); run without --resume to start over"
        )


def make_client(
    options: ImportOptions,
    on_error: Callable[[BaseException, list[Any]], None],
    on_filtered: Callable[[], None],
) -> Client:
    """The client of an import: ``CLIENT_DEFAULTS``, then the options, then ``options.client_options``.

    ``on_error`` receives every drop (those not at delivery through ``on_drop``).
    Each ``before_send`` hook of ``client_options`` is wrapped to call ``on_filtered`` when it drops a
    message; hooks run on the calling thread, inside the ``track``-style call.
    """
    settings: dict[str, Any] = dict(CLIENT_DEFAULTS)
    settings.update(gzip=options.gzip, thread=options.threads)
    if options.max_retries is not None:
        settings["max_retries"] = options.max_retries
    if options.client_options:
        settings.update(options.client_options)
    settings["send"] = not options.dry_run
    settings["on_error"] = on_error
    settings["on_drop"] = functools.partial(_undelivered_to, on_error)
    hooks = settings.get("before_send")
    if hooks is not None:
        settings["before_send"] = [_reporting_hook(hook, on_filtered) for hook in _as_list(hooks)]
    if not options.dry_run and not options.write_key:
        raise ImportConfigError("a write key is required (--write-key or SEGMENT_WRITE_KEY)")
    try:
        return Client(options.write_key or "dry-run", host=options.host, region=options.region, **settings)
    except ValueError as exc:
        raise ImportConfigError(str(exc)) from None


def _undelivered_to(
    on_error: Callable[[BaseException, list[Any]], None], reason: str, exc: BaseException, messages: list[Any]
) -> None:
    """Hand the client's drops (not its filtered messages or warnings) to the engine's ``on_error``."""
    if reason != "filtered" and reason not in WARNING_REASONS:
        on_error(exc, messages)


def _as_list(hooks: Any) -> list[Any]:
    return [hooks] if callable(hooks) else list(hooks)


def _reporting_hook(hook: Callable[[Any], Any], on_filtered: Callable[[], None]) -> Callable[[Any], Any]:
    @functools.wraps(hook)
    def report_drop(message: Any) -> Any:
        result = hook(message)
        if result is None:
            on_filtered()
        return result

    return report_drop
