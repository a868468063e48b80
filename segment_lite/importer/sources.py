"""Open import inputs (files, gzip, stdin) and read their rows: JSON Lines, CSV, or in-memory records."""

from __future__ import annotations

import codecs
import collections
import contextlib
import csv
import gzip
import hashlib
import io
import json
import os
import re
import stat
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, BinaryIO, Callable, Optional, Union

from segment_lite.importer.errors import ImportConfigError, RowError
from segment_lite.importer.ids import LineIdMaker, RowIdMaker

__all__ = [
    "FILE_KEY_BYTES",
    "FORMATS",
    "CsvSource",
    "JsonLinesSource",
    "ReadDigest",
    "RecordSource",
    "Source",
    "detect_format",
    "json_loads",
    "open_source",
]

#: The canonical JSON a derived messageId of an in-memory row is a hash of (one encoder, made once).
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)
#: How much of an input's (decompressed) content its file key is a hash of.
FILE_KEY_BYTES = 64 * 1024
FORMATS = ("jsonl", "csv")
_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"
_READ_BUFFER = 1 << 20

try:  # the [fast] extra: orjson parses JSON several times faster
    import orjson

    #: Parses one JSON text (bytes or str): orjson's parser with the [fast] extra, else the standard one.
    json_loads: Callable[[Union[bytes, str]], Any] = orjson.loads
    _JSON_ERRORS: tuple[type[Exception], ...] = (orjson.JSONDecodeError, ValueError)
except ImportError:  # pragma: no cover - depends on the environment
    json_loads = json.loads
    _JSON_ERRORS = (ValueError,)


class _Replay(io.RawIOBase):
    """A raw stream that gives back ``head`` (bytes already read) and then the rest of ``rest``."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        """Always True."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` from the replayed head, then from the rest."""
        view = memoryview(buffer).cast("B")
        if len(self._head):
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(view))
        n = len(data)
        view[:n] = data
        return n


def _read_up_to(stream: BinaryIO, size: int) -> bytes:
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


class ReadDigest:
    """SHA-256 of the rows of an input read so far, up to any line already read (the resume check).

    The reader adds each row (the line it starts on, its bytes) as it reads it;
    :meth:`digest` hashes the rows up to a line. A row belongs to the line it
    starts on, so the digest up to line L covers exactly the rows on lines 1 to
    L (blank ones too), whatever was read ahead. Adding is one append and each
    hashing step is committed with one assignment, so an interrupt (Ctrl-C)
    anywhere never hashes a row twice or skips one.
    """

    #: Rows held before the older half is hashed (a resume skips millions of rows before its first
    #: digest, and a row may be large).
    _BATCH = 256

    def __init__(self) -> None:
        self._rows: collections.deque[tuple[int, Union[bytes, str]]] = collections.deque()
        self._state: tuple[Any, int] = (hashlib.sha256(), 0)  # (hash of the rows up to line, line)

    def add(self, line: int, data: Union[bytes, str]) -> None:
        """Note the row starting on ``line`` (text is hashed as UTF-8); lines only increase."""
        rows = self._rows
        rows.append((line, data))
        if len(rows) > 2 * self._BATCH:
            self._hash_upto(rows[self._BATCH][0])

    def _hash_upto(self, line: int) -> Any:
        hashed, done = self._state
        if line <= done:
            return hashed
        step = hashed.copy()
        for row_line, data in self._rows:
            if row_line > line:
                break
            if row_line > done:  # rows up to ``done`` may still be queued after an interrupted trim
                step.update(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
        self._state = (step, line)
        rows = self._rows
        while rows and rows[0][0] <= line:
            rows.popleft()
        return step

    def digest(self, line: int) -> str:
        """The hex SHA-256 of the rows on lines 1 to ``line``."""
        return str(self._hash_upto(line).hexdigest())


def detect_format(path: str) -> str:
    """``csv`` for ``.csv``/``.tsv`` names (optionally ``.gz``), ``jsonl`` otherwise (and for stdin)."""
    name = path.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith((".csv", ".tsv")):
        return "csv"
    return "jsonl"


class Source:
    """Rows of one input, each with its line number, decoded only when needed.

    ``records()`` yields ``(line, raw)``; ``decode(raw)`` makes the row dict (or
    raises ``RowError``); ``content(raw)`` is the bytes a derived messageId is a
    hash of; ``original(raw)`` is what a rejects record shows.
    """

    path: str = ""
    key: str = ""
    index: int = 0  # position among the inputs of an import
    size: Optional[int] = None
    compressed: bool = False
    format: str = ""

    def records(self) -> Iterator[tuple[int, Any]]:
        """Yield ``(line_number, raw)`` for every non-blank row."""
        raise NotImplementedError

    def decode(self, raw: Any) -> dict[str, Any]:
        """The row as a dict; ``RowError`` when it cannot be read."""
        raise NotImplementedError

    def content(self, raw: Any) -> bytes:
        """The row's bytes, for deriving its messageId."""
        raise NotImplementedError

    def id_maker(self, salt: str) -> Callable[[int, bytes], str]:
        """Derives the messageId of a row from its line and :meth:`content`."""
        return LineIdMaker(self.key, salt)

    def original(self, raw: Any) -> Any:
        """The row as written to the rejects file (a JSON value)."""
        raise NotImplementedError

    def position(self) -> Optional[int]:
        """Bytes of the underlying file consumed so far, when it is a regular file."""
        return None

    def digest(self, line: int) -> Optional[str]:
        """SHA-256 (hex) of the rows on lines 1 to ``line``, all already read; None if not kept."""
        return None

    def close(self) -> None:
        """Close the file (never stdin)."""


class _FileSource(Source):
    def __init__(self, path: str, stdin: Optional[BinaryIO] = None) -> None:
        self.path = path
        self._owned = path != "-"
        raw: BinaryIO
        if path == "-":
            raw = stdin if stdin is not None else sys.stdin.buffer
            self.path = "<stdin>"
        else:
            try:
                raw = open(path, "rb")  # noqa: SIM115 - closed by close()
            except OSError as exc:
                raise ImportConfigError(f"cannot open {path}: {exc.strerror or exc}") from None
            info = os.fstat(raw.fileno())
            if stat.S_ISREG(info.st_mode):
                self.size = info.st_size
        self._raw = raw
        try:
            magic = _read_up_to(raw, 2)
            stream: BinaryIO = io.BufferedReader(_Replay(magic, raw))
            self.compressed = magic == _GZIP_MAGIC
            if self.compressed:
                stream = gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[assignment]
            elif path.lower().endswith(".gz") and magic:
                raise ImportConfigError(f"{path} is named .gz but does not hold gzip data")
            try:
                head = _read_up_to(stream, FILE_KEY_BYTES)
            except (OSError, EOFError) as exc:
                raise ImportConfigError(f"cannot read {self.path}: {exc}") from None
            self.key = hashlib.sha256(head).hexdigest()
            self._stream = stream
            self._data: BinaryIO = io.BufferedReader(_Replay(head, stream), _READ_BUFFER)  # type: ignore[assignment]
        except BaseException:
            self.close()
            raise
        self._read = ReadDigest()

    def digest(self, line: int) -> Optional[str]:
        """See :meth:`Source.digest`."""
        return self._read.digest(line)

    def position(self) -> Optional[int]:
        """See :meth:`Source.position`."""
        if self.size is None:
            return None
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        """See :meth:`Source.close`."""
        if self._owned:
            self._raw.close()


class JsonLinesSource(_FileSource):
    """JSON Lines: one JSON object per line; blank lines are skipped (their numbers still count)."""

    format = "jsonl"
    _before_line = 0  # (decompressed) bytes before the line being read

    def position(self) -> Optional[int]:
        """See :meth:`Source.position`; exact for an uncompressed file (the start of the current row)."""
        if self.size is not None and not self.compressed:
            return self._before_line
        return super().position()

    def records(self) -> Iterator[tuple[int, Any]]:
        """See :meth:`Source.records`."""
        line_no = 0
        consumed = 0
        note = self._read.add
        try:
            for line in self._data:
                line_no += 1
                self._before_line = consumed
                consumed += len(line)
                note(line_no, line)
                if not line.strip():
                    continue
                # The line as written, less its ending: a rejects record shows it exactly.
                row = line[:-2] if line.endswith(b"\r\n") else line[:-1] if line.endswith(b"\n") else line
                if line_no == 1 and row.startswith(_BOM):
                    row = row[3:]
                yield line_no, row
        except (OSError, EOFError) as exc:
            raise ImportConfigError(f"cannot read {self.path} after line {line_no}: {exc}") from None

    def decode(self, raw: Any) -> dict[str, Any]:
        """See :meth:`Source.decode`."""
        try:
            value = json_loads(raw)
        except _JSON_ERRORS as exc:
            raise RowError(f"invalid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise RowError(f"a line must hold a JSON object, got {type(value).__name__}")
        return value

    def content(self, raw: Any) -> bytes:
        """See :meth:`Source.content`: the line without the blanks around it."""
        return bytes(raw).strip()

    def original(self, raw: Any) -> Any:
        """See :meth:`Source.original`: the JSON value, or the line's exact text when it is not JSON."""
        try:
            return json_loads(raw)
        except _JSON_ERRORS:
            return bytes(raw).decode("utf-8", "replace")


#: The codec error handler of CSV inputs: each byte the encoding cannot read becomes the lone
#: surrogate U+DC00 + byte (what strict decoding never gives), so one row in another encoding is
#: found, and rejected, on its own line instead of failing the whole file where decoding ran ahead.
_UNDECODABLE = "segment_lite.importer.undecodable"
_UNDECODABLE_CHARS = re.compile("[\udc00-\udcff]")
_undecodable_seen = [0]  # bytes marked so far in this process: rows are searched only once it moves


def _mark_undecodable(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    _undecodable_seen[0] += 1
    return "".join(chr(0xDC00 + byte) for byte in exc.object[exc.start : exc.end]), exc.end


codecs.register_error(_UNDECODABLE, _mark_undecodable)


class _BrokenRecord:
    """A CSV record that cannot be read as fields: why, where, and its text for the rejects file."""

    __slots__ = ("field", "reason", "text")

    def __init__(self, reason: str, text: str, field: Optional[str] = None) -> None:
        self.reason = reason
        self.field = field
        # Unreadable bytes are shown as U+FFFD, and the record without its last line ending.
        self.text = _UNDECODABLE_CHARS.sub("\ufffd", text).removesuffix("\n").removesuffix("\r")


class CsvSource(_FileSource):
    """CSV with a header row (read when opened, as ``header``).

    The line number of a row is that of its first physical line (a quoted field
    may span several). A record that cannot be read is one rejected row, and
    reading goes on: a field over the csv module's limit, or a quote that is
    not closed where a quote may close (then only the record's first line is
    rejected, and reading resumes on the next line), or bytes the encoding
    cannot read (the whole record).
    """

    format = "csv"

    def __init__(
        self,
        path: str,
        stdin: Optional[BinaryIO] = None,
        delimiter: Optional[str] = None,
        encoding: str = "utf-8",
    ) -> None:
        super().__init__(path, stdin)
        if delimiter is None:
            delimiter = "\t" if path.lower().removesuffix(".gz").endswith(".tsv") else ","
        self.delimiter = delimiter
        self.encoding = encoding
        codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
        try:
            self._text = io.TextIOWrapper(
                self._data,  # type: ignore[arg-type]
                encoding=codec,
                errors=_UNDECODABLE,
                newline="",
            )
            self._reader = csv.reader((), delimiter=delimiter)  # checks the delimiter
        except (LookupError, TypeError, csv.Error) as exc:
            self.close()
            raise ImportConfigError(f"{self.path}: {exc}") from None
        self._line = 1  # the physical line the next record starts on
        self._again: collections.deque[str] = collections.deque()  # lines to read again
        self._taken: list[str] = []  # the physical lines of the record being read
        self._ended = False  # the csv reader asked for a line past the last one
        self._undecodable_at_open = _undecodable_seen[0]
        self.header: list[str] = []
        try:
            with self._errors():
                first = next(self._read_records(), None)
        except BaseException:
            self.close()
            raise
        if first is not None:
            line, fields = first
            if isinstance(fields, _BrokenRecord):
                self.close()
                raise ImportConfigError(f"{self.path}: cannot read the header (line {line}): {fields.reason}")
            self.header = [name.strip() for name in fields]
            seen: set[str] = set()
            for name in self.header:
                if name in seen:
                    self.close()
                    raise ImportConfigError(f"{self.path}: the header names column {name!r} twice")
                seen.add(name)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except UnicodeError as exc:  # a codec that fails otherwise than on bytes (the handler takes those)
            raise ImportConfigError(
                f"{self.path} cannot be read as {self.encoding} near line {self._line}: {exc}"
                " (pass the file's encoding)"
            ) from None
        except (OSError, EOFError) as exc:
            raise ImportConfigError(f"cannot read {self.path} near line {self._line}: {exc}") from None

    def _lines(self) -> Iterator[str]:
        """The physical lines for the csv reader: those to read again first, then the file's."""
        taken = self._taken
        again = self._again
        while again:
            line = again.popleft()
            taken.append(line)
            yield line
        for line in self._text:
            taken.append(line)
            yield line
        self._ended = True

    def _read_records(self) -> Iterator[tuple[int, Any]]:
        """Every record, blank ones included, as ``(line, fields or _BrokenRecord)``."""
        taken = self._taken
        reader = csv.reader(self._lines(), delimiter=self.delimiter)
        note = self._read.add
        while True:
            start = self._line
            taken.clear()
            try:
                fields: Any = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                fields = self._broken(start, f"{exc}", too_long=True)
            else:
                # A record that spans lines, or that the file's end closed, must be well-formed CSV:
                # else a stray quote swallowed the lines after it.
                if (len(taken) > 1 or self._ended) and not self._well_formed():
                    fields = self._broken(start, "", too_long=False)
            if not taken:  # nothing read: nothing more can be
                return
            if isinstance(fields, _BrokenRecord):
                # Only the first line is rejected; the lines after it are read again as records.
                self._again.extendleft(reversed(taken[1:]))
                del taken[1:]
                self._ended = False
                reader = csv.reader(self._lines(), delimiter=self.delimiter)
            elif _undecodable_seen[0] != self._undecodable_at_open:
                fields = self._undecodable(start, fields) or fields
            self._line = start + len(taken)
            note(start, taken[0] if len(taken) == 1 else "".join(taken))
            yield start, fields

    def _well_formed(self) -> bool:
        try:
            for _ in csv.reader(self._taken, delimiter=self.delimiter, strict=True):
                pass
        except csv.Error:
            return False
        return True

    def _broken(self, start: int, error: str, *, too_long: bool) -> _BrokenRecord:
        first = self._taken[0] if self._taken else ""
        if not too_long:
            reason = (
                f"a quote opened on line {start} is not closed where a CSV quote may close"
                f"{' before the end of the file' if self._ended else ''} (a stray quote?);"
                f" line {start} is rejected and reading goes on at line {start + 1}"
            )
            return _BrokenRecord(reason, first)
        limit = csv.field_size_limit()
        column: Optional[str] = None
        if len(self._taken) == 1 and '"' not in first:
            for name, value in zip(self.header, first.split(self.delimiter)):
                if len(value) > limit:
                    column = name
                    break
        where = f"column {column!r}" if column is not None else "a field"
        reason = f"{where} on line {start} is longer than {limit:,} characters, the CSV field limit ({error})"
        return _BrokenRecord(reason, first, column)

    def _undecodable(self, start: int, fields: list[str]) -> Optional[_BrokenRecord]:
        """A rejected row when the record holds bytes the encoding cannot read, else None."""
        taken = self._taken
        for offset, line in enumerate(taken):
            found = _UNDECODABLE_CHARS.search(line)
            if found is None:
                continue
            byte = ord(found.group()) - 0xDC00
            column: Optional[str] = None
            for name, value in zip(self.header, fields):
                if _UNDECODABLE_CHARS.search(value):
                    column = name
                    break
            where = f"column {column!r}" if column is not None else "the record"
            reason = (
                f"{where} is not valid {self.encoding} on line {start + offset}: byte 0x{byte:02x}"
                " (pass the file's encoding, e.g. --encoding cp1252)"
            )
            return _BrokenRecord(reason, "".join(taken), column)
        return None

    def records(self) -> Iterator[tuple[int, Any]]:
        """See :meth:`Source.records`."""
        if not self.header:
            return
        with self._errors():
            for start, fields in self._read_records():
                if not fields or (isinstance(fields, list) and len(fields) == 1 and not fields[0].strip()):
                    continue
                yield start, fields

    def decode(self, raw: Any) -> dict[str, Any]:
        """See :meth:`Source.decode`."""
        if isinstance(raw, _BrokenRecord):
            raise RowError(raw.reason, raw.field)
        header = self.header
        if len(raw) != len(header):
            raise RowError(f"the row has {len(raw)} fields; the header has {len(header)}")
        return dict(zip(header, raw))

    def content(self, raw: Any) -> bytes:
        """See :meth:`Source.content`."""
        return "\x1f".join(raw).encode("utf-8", "surrogatepass")

    def original(self, raw: Any) -> Any:
        """See :meth:`Source.original`: ``{column: value}``; the line's text when it could not be read."""
        if isinstance(raw, _BrokenRecord):
            return raw.text
        if len(raw) == len(self.header):
            return dict(zip(self.header, raw))
        return {"fields": list(raw), "header": list(self.header)}


class RecordSource(Source):
    """Rows already in memory (a Spark partition, a list of dicts): no file, no parsing.

    With a ``key`` (e.g. ``"orders-2024/part-7"``), a row's derived messageId
    is that of line ``start + its position`` (1-based) of an input with that
    key. Without one, it comes from the row's content alone (see
    :func:`~segment_lite.importer.ids.derive_row_id`): the same row gets the
    same id wherever and whenever it is sent. ``id_columns`` restricts that
    content to the named columns.
    """

    format = "records"

    def __init__(
        self,
        rows: Iterable[Any],
        key: Optional[str] = None,
        start: int = 0,
        path: str = "",
        id_columns: Optional[Sequence[str]] = None,
    ) -> None:
        self._rows = rows
        self.key = key or ""
        self.path = path or self.key
        self._start = start
        self._by_content = key is None
        self._id_columns = tuple(id_columns) if id_columns else None

    def id_maker(self, salt: str) -> Callable[[int, bytes], str]:
        """See :meth:`Source.id_maker`: by content when the source has no key."""
        return RowIdMaker(salt) if self._by_content else LineIdMaker(self.key, salt)

    def records(self) -> Iterator[tuple[int, Any]]:
        """See :meth:`Source.records`."""
        line = self._start
        for row in self._rows:
            line += 1
            yield line, row

    def decode(self, raw: Any) -> dict[str, Any]:
        """See :meth:`Source.decode`."""
        as_dict = getattr(raw, "asDict", None)  # a pyspark Row
        value = as_dict(recursive=True) if callable(as_dict) else raw
        if isinstance(value, dict):
            return value
        try:
            return dict(value)
        except (TypeError, ValueError):
            raise RowError(f"a record must be a mapping, got {type(raw).__name__}") from None

    def content(self, raw: Any) -> bytes:
        """See :meth:`Source.content`: the row (or its ``id_columns``) as sorted, compact JSON."""
        try:
            row = self.decode(raw)
            if self._id_columns is not None:
                row = {name: row.get(name) for name in self._id_columns}
            text = _CANONICAL_JSON.encode(row)
        except (RowError, TypeError, ValueError, RecursionError):  # unsortable keys, cycles, ...
            text = repr(raw)
        return text.encode("utf-8", "surrogatepass")

    def original(self, raw: Any) -> Any:
        """See :meth:`Source.original`."""
        try:
            return self.decode(raw)
        except RowError:
            return repr(raw)


def open_source(
    path: str,
    fmt: Optional[str] = None,
    *,
    delimiter: Optional[str] = None,
    encoding: str = "utf-8",
    stdin: Optional[BinaryIO] = None,
) -> Source:
    """Open ``path`` (``-`` for stdin) as JSON Lines or CSV; gzip is detected by its magic bytes.

    ``fmt`` is ``jsonl`` or ``csv``; by default it follows the name (see :func:`detect_format`).
    """
    kind = fmt or detect_format(path)
    if kind == "jsonl":
        return JsonLinesSource(path, stdin)
    if kind == "csv":
        return CsvSource(path, stdin, delimiter, encoding)
    raise ImportConfigError(f"unknown input format {kind!r}; use one of {', '.join(FORMATS)}")
