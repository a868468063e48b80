"""The fault plan: which Tracking API requests the collector fails, delays or resets, in arrival order."""

from __future__ import annotations

import email.utils
import json
import random
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional, Union

from segment_lite.collector.processing import error_body
from segment_lite.errors import ValidationError

__all__ = ["Failure", "Fault", "FaultBody", "FaultPlan", "RetryAfter"]

RetryAfter = Union[int, float, str, datetime, None]
FaultBody = Union[bytes, str, dict[str, Any], list[Any], None]


@dataclass(frozen=True)
class Failure:
    """An injected error answer: its status, ``Retry-After`` value, body and extra headers."""

    status: int
    retry_after: Optional[str]
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def make(
        cls,
        status: int,
        retry_after: RetryAfter = None,
        body: FaultBody = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> Failure:
        """Build a failure; a dict or list ``body`` is sent as JSON, str or bytes as plain text."""
        if not 200 <= int(status) <= 599:  # a 1xx is not an answer, only a wait for one
            raise ValidationError(f"not a final HTTP status (200 to 599): {status!r}")
        status = int(status)
        extra = tuple(headers.items()) if headers else ()
        when = _format_retry_after(retry_after)
        if body is None:
            body = error_body("injected_fault", f"fault injected by the local collector: answering {status}")
        if isinstance(body, (dict, list)):
            raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            return cls(status, when, raw, "application/json", extra)
        raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        return cls(status, when, raw, "text/plain; charset=utf-8", extra)

    def response_headers(self) -> tuple[tuple[str, str], ...]:
        """``Retry-After`` (when set) followed by the extra headers."""
        retry_after = () if self.retry_after is None else (("Retry-After", self.retry_after),)
        return retry_after + self.headers


@dataclass(frozen=True)
class Fault:
    """The faults one request drew: a reset, or a failure and/or a delay (or nothing)."""

    reset: bool = False
    failure: Optional[Failure] = None
    delay_s: float = 0.0

    def name(self) -> Optional[str]:
        """``"reset"``, ``"fail"``, ``"delay"``, ``"fail+delay"``, or None for no fault."""
        if self.reset:
            return "reset"
        parts = (["fail"] if self.failure else []) + (["delay"] if self.delay_s > 0 else [])
        return "+".join(parts) or None


class FaultPlan:
    """Pending faults, handed out one request at a time by :meth:`take` (thread-safe).

    Queued failures, delays and resets are taken in arrival order. Once the
    queued failures run out, each request fails with probability ``fail_rate``
    (seeded by ``seed``) with ``rate_failure``; once the queued delays run out,
    each answer is delayed by ``delay_all_s``.
    """

    def __init__(
        self,
        rate_failure: Failure,
        fail_rate: float = 0.0,
        seed: Optional[int] = None,
        delay_all_s: float = 0.0,
    ) -> None:
        if not 0.0 <= fail_rate <= 1.0:
            raise ValidationError("fail_rate must be between 0 and 1", "fail_rate")
        self._lock = threading.Lock()
        self._failures: deque[Failure] = deque()
        self._delays: deque[float] = deque()
        self._resets = 0
        self._reset_markers: tuple[bytes, ...] = ()
        self._rate_failure = rate_failure
        self._fail_rate = fail_rate
        self._random = random.Random(seed)
        self._delay_all_s = delay_all_s

    def fail_next(self, n: int, failure: Failure) -> None:
        """Answer the next ``n`` requests with ``failure``."""
        with self._lock:
            self._failures.extend([failure] * int(n))

    def delay_next(self, n: int, seconds: float) -> None:
        """Delay the answers to the next ``n`` requests by ``seconds``."""
        with self._lock:
            self._delays.extend([float(seconds)] * int(n))

    def reset_next(self, n: int) -> None:
        """Reset the connection of the next ``n`` requests instead of answering."""
        with self._lock:
            self._resets += int(n)

    def reset_when(self, marker: bytes) -> None:
        """Reset the connection of every request whose (decoded) body contains ``marker``."""
        with self._lock:
            self._reset_markers += (marker,)

    def resets_body(self, body: bytes) -> bool:
        """Whether a request with this (decoded) body is to be reset (see :meth:`reset_when`)."""
        markers = self._reset_markers
        return bool(markers) and any(marker in body for marker in markers)

    def clear(self) -> None:
        """Drop every pending or ongoing fault, the rate and the delay for all requests included."""
        with self._lock:
            self._failures.clear()
            self._delays.clear()
            self._resets = 0
            self._reset_markers = ()
            self._fail_rate = 0.0
            self._delay_all_s = 0.0

    def take(self) -> Fault:
        """The faults of the request that just arrived (a pending reset excludes the others)."""
        with self._lock:
            if self._resets > 0:
                self._resets -= 1
                return Fault(reset=True)
            failure: Optional[Failure] = None
            if self._failures:
                failure = self._failures.popleft()
            elif self._fail_rate > 0 and self._random.random() < self._fail_rate:
                failure = self._rate_failure
            delay_s = self._delays.popleft() if self._delays else self._delay_all_s
            return Fault(failure=failure, delay_s=delay_s)


def _format_retry_after(value: RetryAfter) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return email.utils.format_datetime(value.astimezone(timezone.utc), usegmt=True)
    if isinstance(value, bool):
        raise TypeError("retry_after must be seconds, an HTTP-date string or a datetime")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:g}"
    return str(value)
