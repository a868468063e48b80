"""Counters of what happened to every message, and the one place a drop is reported."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Sequence
from typing import Any, Callable, Optional, Union

__all__ = ["DROP_REASONS", "Ledger", "OnError"]

#: Why a message was not delivered. The first six refuse a message at the call
#: (it was never accepted); the rest drop one that was accepted.
DROP_REASONS = (
    "invalid",  # a required field missing or of the wrong type
    "encode_error",  # a value that cannot be encoded to JSON
    "oversize",  # over 32 KB encoded
    "queue_full",  # no room in the queue (count or bytes)
    "after_shutdown",  # tracked after shutdown()
    "spool_write_failed",  # the disk spool could not write it (disk full, I/O error)
    "rejected",  # the server answered a status that is not retried (see rejected_by_status)
    "retries_exhausted",  # retryable failures outlasted max_retries or the time budget
    "shutdown_timeout",  # still undelivered when shutdown()'s deadline passed
    "spool_corrupt",  # unreadable in the disk spool (torn by a crash or power loss, or corrupted)
)

OnError = Callable[[BaseException, list[Any]], Any]
QUEUE_FULL_WARNING_INTERVAL_S = 10.0


class Ledger:
    """Thread-safe counters plus the reporting of drops to ``on_error`` and the log."""

    def __init__(self, on_error: Optional[OnError], log: logging.Logger, secret: str = "") -> None:
        self._on_error = on_error
        self._log = log
        self._secret = secret
        self._secret_pattern = re.compile(rf"(?<![A-Za-z0-9_-]){re.escape(secret)}(?![A-Za-z0-9_-])")
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {
            "accepted_sync": 0,
            "delivered": 0,
            "retried": 0,
            "batches": 0,
            "filtered": 0,
            "hook_errors": 0,
        }
        self._dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self._by_status: dict[int, int] = {}
        self._queue_full_unwarned = 0
        self._queue_full_warned_at = -QUEUE_FULL_WARNING_INTERVAL_S
        self._write_failed_unwarned = 0
        self._write_failed_warned_at = -QUEUE_FULL_WARNING_INTERVAL_S

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name``."""
        with self._lock:
            self._counts[name] += n

    def delivered(self, n: int) -> None:
        """Record a batch of ``n`` messages the server accepted."""
        with self._lock:
            self._counts["delivered"] += n
            self._counts["batches"] += 1

    def drop(
        self,
        reason: str,
        exc: BaseException,
        messages: Sequence[Union[bytes, dict[str, Any]]],
        status: Optional[int] = None,
        count: Optional[int] = None,
    ) -> None:
        """Count ``messages`` (or ``count`` of them) as dropped for ``reason``, log it, call ``on_error``."""
        n = len(messages) if count is None else count
        warn = False
        with self._lock:
            self._dropped[reason] += n
            if status is not None:
                self._by_status[status] = self._by_status.get(status, 0) + n
            if reason == "queue_full":
                self._queue_full_unwarned += n
                now = time.monotonic()
                if now - self._queue_full_warned_at >= QUEUE_FULL_WARNING_INTERVAL_S:
                    warn, n = True, self._queue_full_unwarned
                    self._queue_full_unwarned = 0
                    self._queue_full_warned_at = now
            elif reason == "spool_write_failed":
                # A full disk refuses every call: log the first and then one line per interval.
                self._write_failed_unwarned += n
                now = time.monotonic()
                if now - self._write_failed_warned_at >= QUEUE_FULL_WARNING_INTERVAL_S:
                    warn, n = True, self._write_failed_unwarned
                    self._write_failed_unwarned = 0
                    self._write_failed_warned_at = now
        text = self.redact(str(exc))
        if reason == "queue_full":
            if warn:
                self._log.warning(
                    "queue is full: dropped %d message(s) (raise max_queue_size/max_queue_bytes, "
                    "or spool_max_bytes with a spool, or use on_full='block'); warnings are limited "
                    "to one per %ds",
                    n,
                    int(QUEUE_FULL_WARNING_INTERVAL_S),
                )
        elif reason == "spool_write_failed":
            if warn:
                self._log.error(
                    "dropped %d message(s) (spool_write_failed): %s; errors are logged at most once per %ds",
                    n,
                    text,
                    int(QUEUE_FULL_WARNING_INTERVAL_S),
                )
        elif reason in ("invalid", "encode_error", "oversize"):
            self._log.debug("refused a message (%s): %s", reason, text)
        else:
            self._log.error("dropped %d message(s) (%s): %s", n, reason, text)
        if self._on_error is not None:
            try:
                self._on_error(exc, [_as_dict(m) for m in messages])
            except Exception:
                self._log.exception("on_error callback raised")

    def redact(self, text: str) -> str:
        """``text`` with the write key masked, for anything that reaches a log or an error.

        Only whole occurrences are masked (not inside a longer word), so a short
        key cannot garble unrelated words.
        """
        if self._secret and self._secret in text:
            return self._secret_pattern.sub("***", text)
        return text

    def snapshot(self, accepted_async: int, queued: int, queued_bytes: int) -> dict[str, Any]:
        """The counters as a plain dict (see ``Client.stats``)."""
        with self._lock:
            counts = dict(self._counts)
            dropped = dict(self._dropped)
            by_status = dict(self._by_status)
        accepted_sync = counts.pop("accepted_sync")
        return {
            "accepted": accepted_async + accepted_sync,
            "delivered": counts["delivered"],
            "queued": queued,
            "queued_bytes": queued_bytes,
            "retried": counts["retried"],
            "batches": counts["batches"],
            "filtered": counts["filtered"],
            "hook_errors": counts["hook_errors"],
            "dropped": dropped,
            "dropped_total": sum(dropped.values()),
            "rejected_by_status": by_status,
        }


def _as_dict(message: Union[bytes, dict[str, Any]]) -> Any:
    if isinstance(message, bytes):
        try:
            return json.loads(message)
        except ValueError:
            return {"raw": message.decode("utf-8", "replace")}
    return message
