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

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"path": self.path, "key": self.key, "lines_done": self.lines_done, "complete": self.complete}


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
        """Read the checkpoint at ``path``; None when there is none."""
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ImportConfigError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise ImportConfigError(f"checkpoint {path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("version") != CHECKPOINT_VERSION:
            raise ImportConfigError(
                f"{path} is not a segment-lite import checkpoint (version {CHECKPOINT_VERSION})"
            )
        shard: Optional[tuple[int, int]] = None
        if data.get("shard"):
            index, _, total = str(data["shard"]).partition("/")
            shard = (int(index), int(total))
        try:
            files = [
                FileProgress(str(f["path"]), str(f["key"]), int(f["lines_done"]), bool(f["complete"]))
                for f in data.get("files", [])
            ]
        except (KeyError, TypeError, ValueError):
            raise ImportConfigError(f"checkpoint {path} is damaged (its files list is unreadable)") from None
        counts = {str(k): int(v) for k, v in (data.get("counts") or {}).items() if isinstance(v, int)}
        rejects = data.get("rejects")
        if isinstance(rejects, dict) and isinstance(rejects.get("bytes"), int):
            return cls(
                path,
                files,
                shard,
                str(data.get("id_salt", "")),
                counts,
                str(rejects["path"]),
                rejects["bytes"],
            )
        return cls(path, files, shard, str(data.get("id_salt", "")), counts)


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
