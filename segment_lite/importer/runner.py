"""Run an import: read rows, send them through a blocking client, confirm delivery by chunks, checkpoint."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import hashlib
import os
import signal
import stat
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Optional, Union

from segment_lite.client import Client
from segment_lite.errors import APIError, EncodeError, MessageTooLargeError, ValidationError
from segment_lite.importer.constants import DEFAULT_CHUNK_SIZE
from segment_lite.importer.convert import RowConverter, RowOptions
from segment_lite.importer.errors import ImportConfigError, ImportDeliveryError, RowError
from segment_lite.importer.mapping import FieldMapping
from segment_lite.importer.progress import NullProgress, Progress, Snapshot
from segment_lite.importer.sources import CsvSource, RecordSource, Source, open_source
from segment_lite.importer.state import Checkpoint, FileProgress, RejectsWriter

__all__ = [
    "CLIENT_DEFAULTS",
    "DEFAULT_CHUNK_SIZE",
    "EXIT_CODES",
    "ID_NAMESPACE",
    "TEST_HOOK_ENV",
    "ImportSummary",
    "default_checkpoint_path",
    "default_rejects_path",
    "derive_message_id",
    "import_rows",
    "parse_shard",
    "run_import",
    "total_input_bytes",
]

#: Chunks that may be sent but not yet confirmed; the reader waits beyond this.
MAX_PENDING_CHUNKS = 2
#: Client settings for imports: big batches, a deep queue that blocks instead of dropping.
CLIENT_DEFAULTS: dict[str, Any] = {
    "max_queue_size": 20000,
    "upload_size": 500,
    "max_batch_size": 2500,
    "upload_interval": 0.05,
    "thread": 1,
    "gzip": False,
    "on_full": "block",
    "block_timeout": None,
    "shutdown_timeout": None,
}
#: Namespace of derived messageIds (a fixed, random UUID: changing it would change every id).
ID_NAMESPACE = uuid.UUID("4f4ab0b8-aab6-4269-8ed9-b210397e8cf7")
#: Statuses that mean the whole import is misdirected (write key, host), not that a row is bad.
FATAL_STATUSES = frozenset({401, 403, 404})
#: Testing only: ``exit-after-checkpoints=K`` makes the process ``os._exit(86)`` right after
#: its K-th checkpoint write; ``sigint-after-checkpoints=K`` sends itself SIGINT there.
TEST_HOOK_ENV = "SEGMENT_LITE_IMPORT_TEST_HOOK"
#: Exit status by how the import ended.
EXIT_CODES = {"completed": 0, "max_errors": 3, "delivery_failed": 4, "interrupted": 130}

_MISSING_LINE = 0


def derive_message_id(file_key: str, line: int, content: bytes, salt: str = "") -> str:
    """The messageId of a row that has none: a UUID version 5 (SHA-1 name-based) in :data:`ID_NAMESPACE`.

    The name is ``salt NUL file_key NUL line NUL content``: the same row of the
    same file always gets the same id, so a re-run is deduplicated by Segment;
    any change to the row's bytes gives a new id. Equal to
    ``uuid.uuid5(ID_NAMESPACE, name)`` for a text name.
    """
    return _IdMaker(file_key, salt)(line, content)


class _IdMaker:
    """``derive_message_id`` for one input, with the shared prefix hashed once."""

    __slots__ = ("_prefix",)

    def __init__(self, file_key: str, salt: str = "") -> None:
        self._prefix = hashlib.sha1(
            ID_NAMESPACE.bytes + f"{salt}\0{file_key}\0".encode(), usedforsecurity=False
        )

    def __call__(self, line: int, content: bytes) -> str:
        state = self._prefix.copy()
        state.update(b"%d\0" % line)
        state.update(content)
        raw = bytearray(state.digest()[:16])
        raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
        h = raw.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def parse_shard(text: Union[str, tuple[int, int], None]) -> Optional[tuple[int, int]]:
    """``"2/4"`` -> ``(2, 4)``: shard 2 of 4 (1-based). Raises ``ImportConfigError``."""
    if text is None:
        return None
    if isinstance(text, tuple):
        index, total = text
    else:
        left, sep, right = str(text).partition("/")
        try:
            index, total = int(left), int(right)
        except ValueError:
            raise ImportConfigError(f"--shard must look like i/n (e.g. 1/4), got {text!r}") from None
        if not sep:
            raise ImportConfigError(f"--shard must look like i/n (e.g. 1/4), got {text!r}")
    if total < 1 or not 1 <= index <= total:
        raise ImportConfigError(
            f"--shard i/n needs 1 <= i <= n (shards are numbered from 1), got {index}/{total}"
        )
    return index, total


def _shard_suffix(shard: Optional[tuple[int, int]]) -> str:
    return "" if shard is None or shard[1] == 1 else f".shard-{shard[0]}-of-{shard[1]}"


def default_checkpoint_path(first_input: str, shard: Optional[tuple[int, int]] = None) -> Optional[str]:
    """``FILE.checkpoint.json`` (``FILE.shard-i-of-n.checkpoint.json`` for a shard); None for stdin."""
    if first_input == "-":
        return None
    return f"{first_input}{_shard_suffix(shard)}.checkpoint.json"


def default_rejects_path(first_input: str, shard: Optional[tuple[int, int]] = None) -> str:
    """``FILE.rejects.jsonl``; for stdin ``segment-lite-import.rejects.jsonl``."""
    base = "segment-lite-import" if first_input == "-" else first_input
    return f"{base}{_shard_suffix(shard)}.rejects.jsonl"


@dataclass
class ImportSummary:
    """What an import did.

    ``sent`` counts messages handed to the client (in a dry run: validated);
    ``delivered`` those the server accepted; ``rejected`` rows refused before
    sending (unreadable, invalid); ``rejected_by_server`` messages the server
    refused; ``undelivered`` messages sent but neither delivered nor rejected
    because the import stopped (delivery failure, interruption). ``status`` is
    ``completed``, ``max_errors``, ``delivery_failed`` or ``interrupted``.
    """

    files: list[str] = field(default_factory=list)
    rows_read: int = 0
    sent: int = 0
    delivered: int = 0
    rejected: int = 0
    rejected_by_server: int = 0
    undelivered: int = 0
    skipped_resume: int = 0
    skipped_shard: int = 0
    filtered: int = 0
    elapsed_s: float = 0.0
    dry_run: bool = False
    status: str = "completed"
    error: Optional[str] = None
    checkpoint: Optional[str] = None
    rejects: Optional[str] = None
    shard: Optional[tuple[int, int]] = None

    @property
    def messages_per_second(self) -> float:
        """Delivered (in a dry run: validated) messages per second of the whole run."""
        done = self.sent if self.dry_run else self.delivered
        return done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """0 completed, 3 stopped by ``max_errors``, 4 delivery failed, 130 interrupted."""
        return EXIT_CODES.get(self.status, 1)

    def as_dict(self) -> dict[str, Any]:
        """The summary as plain JSON values."""
        return {
            "status": self.status,
            "files": list(self.files),
            "rows_read": self.rows_read,
            "sent": self.sent,
            "delivered": self.delivered,
            "rejected": self.rejected,
            "rejected_by_server": self.rejected_by_server,
            "undelivered": self.undelivered,
            "skipped_resume": self.skipped_resume,
            "skipped_shard": self.skipped_shard,
            "filtered": self.filtered,
            "elapsed_s": round(self.elapsed_s, 3),
            "messages_per_second": round(self.messages_per_second, 1),
            "dry_run": self.dry_run,
            "error": self.error,
            "checkpoint": self.checkpoint,
            "rejects": self.rejects,
            "shard": None if self.shard is None else f"{self.shard[0]}/{self.shard[1]}",
        }

    def format(self) -> str:
        """A short human-readable report."""
        title = {
            "completed": "dry run complete: nothing was sent" if self.dry_run else "import complete",
            "max_errors": "import stopped: too many rejected rows (--max-errors)",
            "delivery_failed": "import stopped: delivery failed",
            "interrupted": "import interrupted",
        }.get(self.status, self.status)
        lines = [f"segment-lite import: {title}"]
        if self.error:
            lines.append(f"  error:             {self.error}")
        lines.append(f"  rows read:         {self.rows_read:,}")
        if self.dry_run:
            lines.append(f"  valid:             {self.sent:,}")
        else:
            lines.append(f"  sent:              {self.sent:,}")
            lines.append(f"  delivered:         {self.delivered:,}")
        lines.append(f"  rejected:          {self.rejected:,}")
        if self.rejected_by_server:
            lines.append(f"  rejected (server): {self.rejected_by_server:,}")
        if self.undelivered:
            lines.append(f"  undelivered:       {self.undelivered:,} (resume to send them)")
        if self.filtered:
            lines.append(f"  filtered:          {self.filtered:,} (by a before_send hook)")
        if self.skipped_resume:
            lines.append(f"  skipped (resume):  {self.skipped_resume:,}")
        if self.shard is not None:
            lines.append(f"  skipped (shard {self.shard[0]}/{self.shard[1]}): {self.skipped_shard:,}")
        lines.append(f"  elapsed:           {self.elapsed_s:.2f} s ({self.messages_per_second:,.0f} msg/s)")
        if self.rejects and (self.rejected or self.rejected_by_server):
            lines.append(f"  rejects file:      {self.rejects}")
        if self.checkpoint:
            lines.append(f"  checkpoint:        {self.checkpoint}")
        return "\n".join(lines)


class _Stop(Exception):
    """Internal: stop reading (max errors reached, delivery failed)."""


@dataclass
class _Pending:
    target: int  # the client's accepted count when the chunk ended
    index: int  # file index
    line: int  # last line of the chunk
    complete: bool  # the chunk ends its file
    chunk: dict[str, tuple[Source, int, Any]]


#: Receives the chunks just confirmed, oldest first, as (file index, last line, ends the file).
SettledCallback = Callable[[list[tuple[int, int, bool]]], None]


class _Engine:
    """Feeds rows to the client and keeps the books; shared by file imports and :func:`import_rows`."""

    def __init__(
        self,
        client: Client,
        converter: RowConverter,
        rejects: RejectsWriter,
        *,
        dry_run: bool,
        max_errors: Optional[int],
        shard: Optional[tuple[int, int]],
        chunk_size: int,
        progress: Progress,
        id_salt: str,
        total_bytes: Optional[int] = None,
        on_settled: Optional[SettledCallback] = None,
    ) -> None:
        self.client = client
        self.converter = converter
        self.rejects = rejects
        self.dry_run = dry_run
        self.max_errors = max_errors
        self.shard = shard
        self.chunk_size = max(1, int(chunk_size))
        self.progress = progress
        self.id_salt = id_salt
        self.total_bytes = total_bytes
        self.on_settled = on_settled
        self.sending = not dry_run

        self.rows_read = 0
        self.sent = 0
        self.rejected = 0
        self.rejected_by_server = 0
        self.skipped_resume = 0
        self.skipped_shard = 0
        self.filtered = 0
        self._filtered_seen = 0
        self.stop_reason: Optional[str] = None
        self.fatal_error: Optional[str] = None
        self.fatal_pos: Optional[tuple[int, int]] = None

        self._lock = threading.Lock()
        self._closing = False
        self._pending: collections.deque[_Pending] = collections.deque()
        self._chunk: dict[str, tuple[Source, int, Any]] = {}
        self._chunks: collections.deque[dict[str, tuple[Source, int, Any]]] = collections.deque([self._chunk])
        self._rows_in_chunk = 0
        self._last: Optional[tuple[int, int]] = None
        self._last_complete = False
        self._bytes_done = 0
        self._source: Optional[Source] = None
        self._started = time.monotonic()
        self._next_tick = self._started + progress.interval_s
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
                if found is None:
                    self.rejects.write(
                        file="",
                        line=None,
                        stage="server",
                        reason=reason,
                        field=None,
                        row=message,
                        status=exc.status,
                        messageId=mid,
                    )
                else:
                    source, line, raw = found
                    self.rejects.write(
                        file=source.path,
                        line=line,
                        stage="server",
                        reason=reason,
                        field=None,
                        row=source.original(raw),
                        status=exc.status,
                        messageId=mid,
                    )
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

    def _lookup(self, mid: Any) -> Optional[tuple[Source, int, Any]]:
        if mid is None:
            return None
        key = str(mid)
        with self._lock:
            chunks = list(self._chunks)
        for chunk in chunks:
            found = chunk.get(key)
            if found is not None:
                return found
        return None

    def _position(self, mid: Any) -> tuple[int, int]:
        found = self._lookup(mid)
        if found is None:
            return (-1, -1)  # unknown: confirm nothing further
        source, line, _ = found
        return (source.index, line)

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
        self.rejects.write(
            file=source.path, line=line, stage=stage, reason=reason, field=path, row=source.original(raw)
        )
        with self._lock:
            self.rejected += 1
            self._check_max_errors()

    def run_source(
        self, index: int, source: Source, skip_upto: int = 0, converter: Optional[RowConverter] = None
    ) -> None:
        """Send every row of ``source`` after line ``skip_upto``; raises ``_Stop`` to end the import early."""
        source.index = index
        self._source = source
        methods = self._methods
        convert = (converter or self.converter).convert
        decode = source.decode
        make_id = _IdMaker(source.key, self.id_salt)
        shard_n = self.shard[1] if self.shard else 1
        shard_r = self.shard[0] - 1 if self.shard else 0
        chunk_size = self.chunk_size
        sending = self.sending
        last_line = 0
        for line, raw in source.records():
            self.rows_read += 1
            last_line = line
            if line <= skip_upto:
                self.skipped_resume += 1
                continue
            if shard_n > 1 and (line - 1) % shard_n != shard_r:
                self.skipped_shard += 1
            else:
                try:
                    method, kwargs = convert(decode(raw))
                    mid = kwargs["message_id"]
                    if mid is None:
                        mid = kwargs["message_id"] = make_id(line, source.content(raw))
                    if sending:
                        self._chunk[str(mid)] = (source, line, raw)
                    queued, _ = methods[method](**kwargs)
                except (RowError, ValidationError, EncodeError) as exc:
                    self._reject(source, line, raw, exc)
                else:
                    if queued:
                        self.sent += 1
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
        self._last = (index, last_line)
        self._boundary(index, last_line, True)
        if source.size is not None:
            self._bytes_done += source.size
        self._source = None

    def _not_queued(self, index: int, line: int) -> None:
        """The client did not take a message: a ``before_send`` hook filtered it, or it was dropped."""
        filtered = int(self.client.stats()["filtered"])
        if filtered > self._filtered_seen:
            self._filtered_seen = filtered
            self.filtered += 1
            return
        with self._lock:
            self.stop_reason = self.stop_reason or "delivery_failed"
            self.fatal_error = self.fatal_error or "the client refused a message (queue full or shut down)"
            self.fatal_pos = min(self.fatal_pos or (index, line), (index, line))
        raise _Stop

    # -- confirming delivery --------------------------------------------------------

    def _boundary(self, index: int, line: int, complete: bool) -> None:
        target = self.client.mark() if self.sending else 0
        with self._lock:
            self._pending.append(_Pending(target, index, line, complete, self._chunk))
            self._chunk = {}
            self._chunks.append(self._chunk)
        self._rows_in_chunk = 0
        self._advance(block=False)
        while len(self._pending) > MAX_PENDING_CHUNKS:
            self._advance(block=True)

    def _settled(self, target: int, timeout: float) -> bool:
        if not self.sending:
            return True
        return self.client.wait_settled(target, timeout)

    def _advance(self, block: bool) -> None:
        """Confirm the chunks whose messages are all settled, oldest first; checkpoint the newest."""
        confirmed: list[tuple[int, int, bool]] = []
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
                fatal = self.fatal_pos
            if fatal is None or (pending.index, pending.line) < fatal:
                confirmed.append((pending.index, pending.line, pending.complete))
        if confirmed and self.on_settled is not None:
            self.rejects.flush()
            self.on_settled(confirmed)

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
            self._boundary_unblocked(*self._last)
        settled = False
        if self.stop_reason != "delivery_failed":
            try:
                settled = self._flush(flush_timeout)
            except KeyboardInterrupt:
                settled = False
        if not settled:
            self.close(0.0)
        self._advance(block=False)

    def _boundary_unblocked(self, index: int, line: int) -> None:
        target = self.client.mark() if self.sending else 0
        with self._lock:
            self._pending.append(_Pending(target, index, line, False, self._chunk))
            self._chunk = {}
            self._chunks.append(self._chunk)
        self._rows_in_chunk = 0

    def finish(self) -> None:
        """After the last row: wait for every message to be settled and confirm the last chunks."""
        self._flush(None)
        self._advance(block=False)

    def close(self, timeout: Optional[float]) -> None:
        """Shut the client down; what is still undelivered after ``timeout`` is dropped (and counted)."""
        self._closing = True
        if self.sending:
            self.client.shutdown(timeout)

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


def _make_client(
    engine_holder: list[_Engine],
    write_key: Optional[str],
    host: Optional[str],
    region: Optional[str],
    dry_run: bool,
    gzip: bool,
    threads: int,
    max_retries: Optional[int],
    client_options: Optional[Mapping[str, Any]],
) -> Client:
    options: dict[str, Any] = dict(CLIENT_DEFAULTS)
    options.update(gzip=gzip, thread=max(1, threads))
    if max_retries is not None:
        options["max_retries"] = max_retries
    if client_options:
        options.update(client_options)
    options["send"] = not dry_run
    options["on_error"] = lambda exc, messages: engine_holder[0].on_error(exc, messages)
    if not dry_run and not write_key:
        raise ImportConfigError("a write key is required (--write-key or SEGMENT_WRITE_KEY)")
    try:
        return Client(write_key or "dry-run", host=host, region=region, **options)
    except ValueError as exc:
        raise ImportConfigError(str(exc)) from None


def _hook() -> Optional[tuple[str, int]]:
    spec = os.environ.get(TEST_HOOK_ENV, "")
    action, _, count = spec.partition("=")
    if action in ("exit-after-checkpoints", "sigint-after-checkpoints") and count.isdigit():
        return action, int(count)
    return None


def total_input_bytes(paths: Sequence[str]) -> Optional[int]:
    """The summed size of ``paths`` when all are regular files (for progress and ETA), else None."""
    total = 0
    for path in paths:
        if path == "-":
            return None
        try:
            info = os.stat(path)
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        total += info.st_size
    return total


def _row_options(
    type: Optional[str],
    mapping: Union[FieldMapping, Mapping[str, Any], str, Sequence[str], None],
    constants: Optional[Mapping[str, Any]],
    from_archive: bool,
    allow_now: bool,
    timezone: Union[str, datetime.tzinfo, None],
    integrations: Optional[dict[str, Any]],
    id_salt: str,
) -> RowOptions:
    field_mapping: Optional[FieldMapping]
    if isinstance(mapping, FieldMapping):
        field_mapping = mapping
        if constants:
            field_mapping = FieldMapping(mapping.rules, {**mapping.constants, **constants})
    elif mapping is not None or constants:
        field_mapping = FieldMapping.parse(mapping or {}, constants)
    else:
        field_mapping = None
    return RowOptions(
        type=type,
        mapping=field_mapping,
        from_archive=from_archive,
        allow_now=allow_now,
        timezone=timezone,
        integrations=integrations,
        id_salt=id_salt,
    )


def run_import(
    paths: Sequence[str],
    *,
    write_key: Optional[str] = None,
    host: Optional[str] = None,
    region: Optional[str] = None,
    format: Optional[str] = None,
    type: Optional[str] = None,
    mapping: Union[FieldMapping, Mapping[str, Any], str, Sequence[str], None] = None,
    constants: Optional[Mapping[str, Any]] = None,
    from_archive: bool = False,
    allow_now: bool = False,
    timezone: Union[str, datetime.tzinfo, None] = None,
    integrations: Optional[dict[str, Any]] = None,
    checkpoint: Union[str, bool, None] = None,
    resume: bool = False,
    rejects: Union[str, bool, None] = None,
    dry_run: bool = False,
    max_errors: Optional[int] = None,
    shard: Union[str, tuple[int, int], None] = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    gzip: bool = False,
    threads: int = 1,
    max_retries: Optional[int] = None,
    id_salt: str = "",
    delimiter: Optional[str] = None,
    encoding: str = "utf-8",
    interrupt_timeout: float = 30.0,
    progress: Optional[Progress] = None,
    stdin: Optional[BinaryIO] = None,
    client_options: Optional[Mapping[str, Any]] = None,
) -> ImportSummary:
    """Import historical events from files into Segment; returns an :class:`ImportSummary`.

    ``paths`` are JSON Lines or CSV files (gzip detected by content; ``-`` is
    stdin). Each row becomes one message sent with its original timestamp;
    rows without a messageId get one derived from the file's content key and
    the line (see :func:`derive_message_id`), so re-running an import is
    deduplicated by Segment.

    Progress is confirmed chunk by chunk (``chunk_size`` rows): once every
    message of a chunk is delivered or definitively rejected, ``checkpoint``
    (default ``FILE.checkpoint.json``; ``False`` for none) is rewritten
    atomically. ``resume=True`` skips the rows it covers. Rows that cannot be
    sent, and messages the server rejects, go to ``rejects`` (default
    ``FILE.rejects.jsonl``; ``False`` to only count them) and the import goes
    on, until more than ``max_errors`` were rejected.

    ``shard=(i, n)`` (or ``"i/n"``) imports only the rows on lines ``L`` with
    ``(L - 1) % n == i - 1``. ``dry_run=True`` validates every row with the
    client's real validation and sends nothing.

    The run ends with ``status`` ``completed``, ``max_errors``,
    ``delivery_failed`` (retries exhausted or the write key refused: resume
    later) or ``interrupted`` (KeyboardInterrupt: what was in flight is
    flushed for up to ``interrupt_timeout`` seconds and the checkpoint written).
    Raises ``ImportConfigError`` for unusable options or inputs.
    """
    paths = list(paths)
    if not paths:
        raise ImportConfigError("no input files")
    if paths.count("-") > 1:
        raise ImportConfigError("stdin (-) can be read only once")
    for path in paths:
        if path != "-" and not os.path.exists(path):
            raise ImportConfigError(f"{path}: no such file")
    if max_errors is not None and max_errors < 0:
        raise ImportConfigError("--max-errors must be 0 or more")
    shard_spec = parse_shard(shard)
    options = _row_options(type, mapping, constants, from_archive, allow_now, timezone, integrations, id_salt)
    converter = RowConverter(options)

    if checkpoint is None or checkpoint is True:
        checkpoint_path = default_checkpoint_path(paths[0], shard_spec)
    elif checkpoint is False or checkpoint == "":
        checkpoint_path = None
    else:
        checkpoint_path = str(checkpoint)
    if resume and checkpoint_path is None:
        raise ImportConfigError(
            "--resume needs a checkpoint: pass --checkpoint PATH (reading stdin has no default)"
        )
    if rejects is None or rejects is True:
        rejects_path: Optional[str] = default_rejects_path(paths[0], shard_spec)
    elif rejects is False or rejects == "":
        rejects_path = None
    else:
        rejects_path = str(rejects)

    effective_shard = shard_spec if shard_spec is not None and shard_spec[1] > 1 else None
    previous: Optional[Checkpoint] = None
    if resume and checkpoint_path is not None:
        previous = Checkpoint.load(checkpoint_path)
        if previous is not None:
            if previous.shard != effective_shard:
                was = (
                    "no shard" if previous.shard is None else f"shard {previous.shard[0]}/{previous.shard[1]}"
                )
                raise ImportConfigError(
                    f"checkpoint {checkpoint_path} was written for {was}; pass the same --shard"
                )
            if previous.id_salt != id_salt:
                raise ImportConfigError(
                    f"checkpoint {checkpoint_path} was written with a different --id-salt"
                )
            if len(previous.files) > len(paths):
                raise ImportConfigError(
                    f"checkpoint {checkpoint_path} covers {len(previous.files)} inputs; {len(paths)} given"
                )

    rejects_writer = RejectsWriter(rejects_path, append=resume and previous is not None)
    holder: list[_Engine] = []
    client = _make_client(
        holder, write_key, host, region, dry_run, gzip, threads, max_retries, client_options
    )
    files = [FileProgress(p if p == "-" else os.path.abspath(p), "", 0, False) for p in paths]
    if previous is not None:
        for entry, done in zip(files, previous.files):
            entry.key, entry.lines_done, entry.complete = done.key, done.lines_done, done.complete
    written = [0]
    hook = _hook()

    def on_settled(chunks: list[tuple[int, int, bool]]) -> None:
        for index, line, complete in chunks:
            current = files[index]
            current.lines_done = max(current.lines_done, line)
            current.complete = current.complete or complete
        if checkpoint_path is None or dry_run:
            return
        engine = holder[0]
        Checkpoint(
            checkpoint_path,
            files,
            effective_shard,
            id_salt,
            {
                "rows_read": engine.rows_read,
                "sent": engine.sent,
                "rejected": engine.rejected,
                "rejected_by_server": engine.rejected_by_server,
            },
        ).save()
        written[0] += 1
        if hook is not None and written[0] == hook[1]:
            if hook[0] == "exit-after-checkpoints":
                os._exit(86)
            os.kill(os.getpid(), signal.SIGINT)

    engine = _Engine(
        client,
        converter,
        rejects_writer,
        dry_run=dry_run,
        max_errors=max_errors,
        shard=shard_spec,
        chunk_size=chunk_size,
        progress=progress or NullProgress(),
        id_salt=id_salt,
        total_bytes=total_input_bytes(paths),
        on_settled=on_settled,
    )
    holder.append(engine)

    status = "completed"
    try:
        try:
            for index, path in enumerate(paths):
                source = open_source(path, format, delimiter=delimiter, encoding=encoding, stdin=stdin)
                try:
                    entry = files[index]
                    if entry.key and entry.key != source.key:
                        raise ImportConfigError(
                            f"{source.path} is not the input the checkpoint recorded as input {index + 1}"
                            " (its content differs); run without --resume to start over"
                        )
                    entry.key = source.key
                    skip = entry.lines_done  # lines appended since are imported
                    own: Optional[RowConverter] = None
                    if isinstance(source, CsvSource) and options.mapping is None:
                        own = RowConverter(
                            dataclasses.replace(options, mapping=FieldMapping.identity(source.header))
                        )
                    engine.run_source(index, source, skip, own)
                finally:
                    source.close()
            engine.finish()
        except _Stop:
            status = engine.stop_reason or "delivery_failed"
            engine.finish_stopped(interrupt_timeout if status == "max_errors" else 0.0)
        except KeyboardInterrupt:
            status = "interrupted"
            engine.finish_stopped(interrupt_timeout)
        except ImportConfigError:
            engine.finish_stopped(interrupt_timeout)
            raise
        if status == "completed" and engine.fatal_error is not None:
            status = "delivery_failed"
    finally:
        engine.close(interrupt_timeout if status == "completed" else 0.0)
        rejects_writer.close()
        engine.progress.close(engine.snapshot())
    summary = engine.summary([f.path for f in files], status)
    summary.checkpoint = None if dry_run else checkpoint_path
    return summary


def import_rows(
    rows: Iterable[Any],
    *,
    source_key: str,
    write_key: Optional[str] = None,
    host: Optional[str] = None,
    region: Optional[str] = None,
    start: int = 0,
    type: Optional[str] = None,
    mapping: Union[FieldMapping, Mapping[str, Any], str, Sequence[str], None] = None,
    constants: Optional[Mapping[str, Any]] = None,
    from_archive: bool = False,
    allow_now: bool = False,
    timezone: Union[str, datetime.tzinfo, None] = None,
    integrations: Optional[dict[str, Any]] = None,
    id_salt: str = "",
    rejects: Optional[str] = None,
    dry_run: bool = False,
    max_errors: Optional[int] = None,
    gzip: bool = False,
    threads: int = 1,
    max_retries: Optional[int] = None,
    raise_on_failure: bool = True,
    client_options: Optional[Mapping[str, Any]] = None,
) -> ImportSummary:
    """Send in-memory rows (dicts, or pyspark ``Row`` objects) with one client, flushing at the end.

    Made for one Spark partition (``df.foreachPartition``): each row is a Spec
    message, or a flat record with ``mapping``; rows without a messageId get
    ``derive_message_id(source_key, start + position, row JSON)``. Choose
    ``source_key`` stable for the same data (e.g. the dataset name plus the
    partition id of a deterministic partitioning), so a retried task sends the
    same ids and Segment deduplicates them. No checkpoint is kept: a failed
    task is simply retried.

    Rejected rows are counted and, when ``rejects`` names a file, appended to
    it. With ``raise_on_failure`` a delivery failure raises
    ``ImportDeliveryError`` (so Spark retries the task).
    """
    options = _row_options(type, mapping, constants, from_archive, allow_now, timezone, integrations, id_salt)
    rejects_writer = RejectsWriter(rejects, append=True)
    holder: list[_Engine] = []
    client = _make_client(
        holder, write_key, host, region, dry_run, gzip, threads, max_retries, client_options
    )
    engine = _Engine(
        client,
        RowConverter(options),
        rejects_writer,
        dry_run=dry_run,
        max_errors=max_errors,
        shard=None,
        chunk_size=DEFAULT_CHUNK_SIZE,
        progress=NullProgress(),
        id_salt=id_salt,
    )
    holder.append(engine)
    source = RecordSource(rows, source_key, start)
    status = "completed"
    try:
        try:
            engine.run_source(0, source)
            engine.finish()
        except _Stop:
            status = engine.stop_reason or "delivery_failed"
            engine.finish_stopped(30.0 if status == "max_errors" else 0.0)
        if status == "completed" and engine.fatal_error is not None:
            status = "delivery_failed"
    finally:
        engine.close(30.0 if status == "completed" else 0.0)
        rejects_writer.close()
    summary = engine.summary([source_key], status)
    if raise_on_failure and status == "delivery_failed":
        raise ImportDeliveryError(
            f"{source_key}: {summary.error} ({summary.undelivered} message(s) undelivered)"
        )
    return summary
