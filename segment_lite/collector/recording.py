"""What the collector saw: recorded Tracking API requests and the counters behind ``Collector.stats``."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from segment_lite.collector.http_server import Headers
from segment_lite.collector.processing import RequestError, parse_json
from segment_lite.collector.text import printable

__all__ = ["CollectorStats", "RecordedRequest", "RequestLog"]


@dataclass
class RecordedRequest:
    """One request to a Tracking API path, as received, and what the collector answered.

    ``raw_body`` is the body as received and ``body`` the body after gunzip
    (None when it could not be decoded); ``json`` parses ``body`` on access.
    A refused request keeps only the first 1 KiB of its body;
    ``raw_body_size`` is always the full size received.
    ``status`` is None when the connection was reset without an answer
    (``reset_next``) and 499 when the client hung up during an injected delay.
    ``fault`` names the injected fault that shaped the answer: ``"fail"``,
    ``"reset"``, ``"delay"`` or ``"fail+delay"``; None for a normal answer.
    """

    method: str
    path: str
    headers: Headers
    raw_body: bytes
    body: Optional[bytes] = None
    status: Optional[int] = None
    response_body: bytes = b""
    fault: Optional[str] = None
    target: str = ""
    received_at: float = 0.0
    raw_body_size: int = 0

    @property
    def truncated(self) -> bool:
        """Whether only a prefix of the body was kept."""
        return len(self.raw_body) < self.raw_body_size

    @property
    def json(self) -> Any:
        """The parsed body, or None when it is not (valid) JSON or was not kept whole."""
        if self.body is None or self.truncated:
            return None
        try:
            return parse_json(self.body)
        except RequestError:
            return None

    @property
    def retained_bytes(self) -> int:
        """How many body bytes this record holds in memory."""
        size = len(self.raw_body)
        if self.body is not None and self.body is not self.raw_body:
            size += len(self.body)
        return size

    def __repr__(self) -> str:
        # A short summary: bodies can be large and may carry the write key.
        payload = self.json
        batch = payload.get("batch") if isinstance(payload, dict) else None
        messages = f", {len(batch)} message(s)" if isinstance(batch, list) else ""
        fault = f", fault={self.fault}" if self.fault else ""
        return (
            f"RecordedRequest({self.method} {self.path} -> {self.status}{messages}, "
            f"{len(self.raw_body)} bytes{fault})"
        )


@dataclass(frozen=True)
class CollectorStats:
    """A snapshot of the collector's counters since start (or the last :meth:`Collector.reset`).

    ``messages_received`` counts the messages of every request answered 200,
    duplicates included, so ``messages_received == messages_stored + duplicates``.
    ``messages_rejected`` counts messages of requests refused by validation.
    ``responses`` maps each HTTP status answered to how many times.
    """

    requests: int = 0
    messages_received: int = 0
    messages_stored: int = 0
    duplicates: int = 0
    messages_rejected: int = 0
    responses: dict[int, int] = field(default_factory=dict)
    resets: int = 0
    abandoned: int = 0
    connections: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The counters as a plain dict (``responses`` keyed by status as a string)."""
        return {
            "requests": self.requests,
            "messages_received": self.messages_received,
            "messages_stored": self.messages_stored,
            "duplicates": self.duplicates,
            "messages_rejected": self.messages_rejected,
            "responses": {str(k): v for k, v in sorted(self.responses.items())},
            "resets": self.resets,
            "abandoned": self.abandoned,
            "connections": self.connections,
        }

    def __getitem__(self, name: str) -> Any:
        """Dict-style access to a counter, e.g. ``stats["duplicates"]``."""
        if name not in self.as_dict():
            raise KeyError(name)
        return getattr(self, name)


class _Counts:
    """Mutable counters behind :class:`CollectorStats`."""

    def __init__(self) -> None:
        self.requests = 0
        self.messages_received = 0
        self.messages_stored = 0
        self.duplicates = 0
        self.messages_rejected = 0
        self.responses: dict[int, int] = {}
        self.resets = 0
        self.abandoned = 0
        self.connections = 0

    def snapshot(self) -> CollectorStats:
        return CollectorStats(
            requests=self.requests,
            messages_received=self.messages_received,
            messages_stored=self.messages_stored,
            duplicates=self.duplicates,
            messages_rejected=self.messages_rejected,
            responses=dict(self.responses),
            resets=self.resets,
            abandoned=self.abandoned,
            connections=self.connections,
        )


class RequestLog:
    """The recorded requests and counters, with waits that wake when they change (thread-safe).

    ``keep_requests`` bounds how many records are kept and ``keep_body_bytes``
    the body bytes they hold in total (the oldest are dropped first; None: no
    bound). ``log`` receives one line per recorded request.
    """

    def __init__(
        self,
        keep_requests: Optional[int] = None,
        log: Optional[Callable[[str], None]] = None,
        keep_body_bytes: Optional[int] = None,
    ) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._requests: deque[RecordedRequest] = deque()
        self._keep_requests = keep_requests
        self._keep_body_bytes = keep_body_bytes
        self._body_bytes = 0
        self._total = 0
        self._counts = _Counts()
        self._unique = 0
        self._log = log

    def record(
        self,
        record: RecordedRequest,
        *,
        received: int = 0,
        stored: int = 0,
        duplicates: int = 0,
        rejected: int = 0,
        abandoned: bool = False,
    ) -> None:
        """Keep ``record`` and count what came of it; log one line."""
        with self._changed:
            self._keep(record)
            self._total += 1
            counts = self._counts
            counts.requests += 1
            counts.messages_received += received
            counts.messages_stored += stored
            counts.duplicates += duplicates
            counts.messages_rejected += rejected
            if record.status is None:
                counts.resets += 1
            else:
                counts.responses[record.status] = counts.responses.get(record.status, 0) + 1
            if abandoned:
                counts.abandoned += 1
            self._unique += stored
            self._changed.notify_all()
        if self._log is not None:
            status = "reset" if record.status is None else str(record.status)
            line = f"{printable(record.method)} {printable(record.path)} {status}"
            if received:
                line += f" {received} message(s): {stored} stored, {duplicates} duplicate(s)"
            if record.fault:
                line += f" [fault: {record.fault}]"
            self._log(line)

    def _keep(self, record: RecordedRequest) -> None:
        self._requests.append(record)
        self._body_bytes += record.retained_bytes
        # The newest record is always kept, whatever its size.
        while len(self._requests) > 1 and (
            (self._keep_requests is not None and len(self._requests) > self._keep_requests)
            or (self._keep_body_bytes is not None and self._body_bytes > self._keep_body_bytes)
        ):
            self._body_bytes -= self._requests.popleft().retained_bytes
        if self._keep_requests == 0:
            self._body_bytes -= self._requests.pop().retained_bytes

    @property
    def body_bytes(self) -> int:
        """How many body bytes the kept records hold."""
        with self._changed:
            return self._body_bytes

    def connection_opened(self) -> None:
        """Count one accepted TCP connection."""
        with self._changed:
            self._counts.connections += 1

    def requests(self) -> list[RecordedRequest]:
        """The kept records, oldest first (a copy)."""
        with self._changed:
            return list(self._requests)

    def stats(self) -> CollectorStats:
        """A snapshot of the counters."""
        with self._changed:
            return self._counts.snapshot()

    def set_unique(self, n: int) -> None:
        """Start the count of unique stored messages at ``n`` (what the store already holds)."""
        with self._changed:
            self._unique = n
            self._changed.notify_all()

    def wait_for_messages(self, n: int, timeout: float) -> bool:
        """Block until at least ``n`` unique messages are stored; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._unique >= n, timeout)

    def wait_for_requests(self, n: int, timeout: float) -> bool:
        """Block until at least ``n`` requests were recorded (dropped records count); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._total >= n, timeout)

    def clear(self) -> None:
        """Forget every record, counter and the unique message count."""
        with self._changed:
            self._requests.clear()
            self._body_bytes = 0
            self._total = 0
            self._counts = _Counts()
            self._unique = 0
            self._changed.notify_all()

    def wake(self) -> None:
        """Wake every waiter so it re-checks (used on stop)."""
        with self._changed:
            self._changed.notify_all()
