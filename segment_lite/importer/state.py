"""What an import leaves on disk: the checkpoint (confirmed progress) and the rejects file."""

from __future__ import annotations

import datetime
import json
import os
import tempfile
import threading
from dataclasses import dataclass, field
from typing import IO, Any, Optional

from segment_lite.importer.errors import ImportConfigError

__all__ = ["CHECKPOINT_VERSION", "Checkpoint", "FileProgress", "RejectsWriter"]

CHECKPOINT_VERSION = 1


@dataclass
class FileProgress:
    """Confirmed progress in one input: every row on a line up to ``lines_done`` is settled."""

    path: str
    key: str
    lines_done: int = 0
    complete: bool = False
    #: SHA-256 of the rows read up to ``lines_done`` (see ``Source.digest``); None when unknown.
    read_sha256: Optional[str] = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "path": self.path,
            "key": self.key,
            "lines_done": self.lines_done,
            "complete": self.complete,
            "read_sha256": self.read_sha256,
        }


@dataclass
class Checkpoint:
    """Progress of an import that is safe to resume from.

    Written only after the messages of every row it covers were delivered or
    definitively rejected, atomically (a temporary file then ``os.replace``).
    ``rejects`` is the rejects file and ``rejects_bytes`` its length then: the
    records of exactly the rows covered (a resume cuts the file back to it,
    because the rows after are read, and rejected, again).
    """

    path: str
    files: list[FileProgress] = field(default_factory=list)
    shard: Optional[tuple[int, int]] = None
    id_salt: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    rejects: Optional[str] = None
    rejects_bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "version": CHECKPOINT_VERSION,
            "tool": "segment-lite import",
            "updated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "shard": None if self.shard is None else f"{self.shard[0]}/{self.shard[1]}",
            "id_salt": self.id_salt,
            "files": [f.as_dict() for f in self.files],
            "counts": dict(self.counts),
            "rejects": None if self.rejects is None else {"path": self.rejects, "bytes": self.rejects_bytes},
        }

    def save(self) -> None:
        """Write the checkpoint atomically: readers see the old one or the new one, never half."""
        directory = os.path.dirname(os.path.abspath(self.path))
        data = json.dumps(self.as_dict(), indent=2, sort_keys=False).encode("utf-8") + b"\n"
        fd, temp = tempfile.mkstemp(prefix=".checkpoint-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
            _fsync_directory(directory)  # the rename itself must reach the disk, not only the data
        except BaseException:
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise

    @classmethod
    def load(cls, path: str) -> Optional[Checkpoint]:
        """Read the checkpoint at ``path``; None when there is none.

        Raises ``ImportConfigError`` naming the file, and the field, when it
        cannot be read or any field is damaged: a checkpoint is trusted whole or
        not at all.
        """
        try:
            with open(path, "rb") as handle:
                data = json.loads(handle.read().decode("utf-8"))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ImportConfigError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
        except ValueError as exc:  # not UTF-8, not JSON
            raise ImportConfigError(f"checkpoint {path} is not valid JSON: {str(exc)[:200]}") from None
        except RecursionError:
            raise ImportConfigError(f"checkpoint {path} is not valid JSON: nested too deep") from None
        if not isinstance(data, dict):
            raise ImportConfigError(f"{path} is not a segment-lite import checkpoint (not a JSON object)")
        if data.get("version") != CHECKPOINT_VERSION:
            raise ImportConfigError(
                f"{path} is not a segment-lite import checkpoint:"
                f" 'version' must be {CHECKPOINT_VERSION}, got {data.get('version')!r:.40}"
            )
        return _Fields(path, data).checkpoint()


class _Fields:
    """Reads the fields of a checkpoint's JSON, each checked; the first damaged one raises, named."""

    def __init__(self, path: str, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    def damaged(self, field: str, expected: str, value: Any) -> ImportConfigError:
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:60] + "..."
        return ImportConfigError(
            f"checkpoint {self.path} is damaged: {field!r} must be {expected}, got {shown}"
        )

    def text(self, field: str, value: Any) -> str:
        if not isinstance(value, str):
            raise self.damaged(field, "a string", value)
        return value

    def count(self, field: str, value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self.damaged(field, "a whole number, 0 or more", value)
        return value

    def checkpoint(self) -> Checkpoint:
        data = self.data
        return Checkpoint(
            self.path,
            self.files(data.get("files", [])),
            self.shard(data.get("shard")),
            self.text("id_salt", data.get("id_salt", "")),
            self.counts(data.get("counts")),
            *self.rejects(data.get("rejects")),
        )

    def shard(self, value: Any) -> Optional[tuple[int, int]]:
        if value is None:
            return None
        index, sep, total = value.partition("/") if isinstance(value, str) else ("", "", "")
        if not (sep and index.isdigit() and total.isdigit() and 1 <= int(index) <= int(total)):
            raise self.damaged("shard", 'null or "i/n" with 1 <= i <= n', value)
        return int(index), int(total)

    def files(self, value: Any) -> list[FileProgress]:
        if not isinstance(value, list):
            raise self.damaged("files", "a list", value)
        out: list[FileProgress] = []
        for n, entry in enumerate(value):
            where = f"files[{n}]"
            if not isinstance(entry, dict):
                raise self.damaged(where, "an object", entry)
            complete = entry.get("complete")
            if not isinstance(complete, bool):
                raise self.damaged(f"{where}.complete", "true or false", complete)
            digest = entry.get("read_sha256")
            if digest is not None and not (
                isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)
            ):
                raise self.damaged(f"{where}.read_sha256", "null or a SHA-256 in hex", digest)
            out.append(
                FileProgress(
                    self.text(f"{where}.path", entry.get("path")),
                    self.text(f"{where}.key", entry.get("key")),
                    self.count(f"{where}.lines_done", entry.get("lines_done")),
                    complete,
                    digest,
                )
            )
        return out

    def counts(self, value: Any) -> dict[str, int]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.damaged("counts", "an object of numbers", value)
        return {str(name): self.count(f"counts.{name}", number) for name, number in value.items()}

    def rejects(self, value: Any) -> tuple[Optional[str], int]:
        if value is None:
            return None, 0
        if not isinstance(value, dict):
            raise self.damaged("rejects", 'null or {"path": ..., "bytes": ...}', value)
        return self.text("rejects.path", value.get("path")), self.count("rejects.bytes", value.get("bytes"))


class RejectsWriter:
    """Appends one JSON line per rejected row: file, line, stage, reason, field, the original row.

    Thread-safe (the server's rejections arrive on the client's sender thread).
    The file is created on the first rejection. ``append=False`` empties an
    existing one when the import starts, so it holds this run's rejections
    only; ``append=True`` keeps it, cut to its first ``keep_bytes`` bytes when
    given (on resume: the records of the rows the checkpoint confirms). ``size``
    is the file's length in bytes as written so far.
    """

    def __init__(self, path: Optional[str], append: bool = False, keep_bytes: Optional[int] = None) -> None:
        self.path = path
        self.count = 0
        self.size = 0
        self._synced = 0
        self._lock = threading.Lock()
        self._handle: Optional[IO[bytes]] = None
        if path is None or not os.path.exists(path):
            return
        if not append:
            with open(path, "wb"):
                pass
            return
        self.size = os.path.getsize(path)
        if keep_bytes is not None and keep_bytes < self.size:
            os.truncate(path, keep_bytes)
            self.size = keep_bytes

    @staticmethod
    def encode(
        *,
        file: str,
        line: Optional[int],
        stage: str,
        reason: str,
        field: Optional[str],
        row: Any,
        **extra: Any,
    ) -> bytes:
        """One record as its JSON line (for writing later, with :meth:`append`)."""
        record: dict[str, Any] = {
            "file": file,
            "line": line,
            "stage": stage,
            "reason": reason,
            "field": field,
        }
        record.update(extra)
        record["row"] = row
        text = json.dumps(record, ensure_ascii=False, default=_json_default) + "\n"
        return text.encode("utf-8", "surrogatepass")

    def append(self, records: list[bytes]) -> None:
        """Write records made by :meth:`encode`, in order."""
        if not records:
            return
        with self._lock:
            self.count += len(records)
            if self.path is None:
                return
            if self._handle is None:
                self._handle = open(self.path, "ab")  # noqa: SIM115 - closed by close()
            for record in records:
                self._handle.write(record)
                self.size += len(record)

    def flush(self) -> None:
        """Put written records on disk (done before each checkpoint, so none is lost on a crash)."""
        with self._lock:
            if self._handle is not None and self._synced != self.size:
                self._handle.flush()
                os.fsync(self._handle.fileno())
                self._synced = self.size

    def close(self) -> None:
        """Flush and close the file."""
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    return str(value)


def _fsync_directory(directory: str) -> None:
    """Flush a directory's entries (a rename in it) to disk, where the platform allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a directory
        pass
    finally:
        os.close(fd)
