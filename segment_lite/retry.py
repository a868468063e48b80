"""Which responses are retried, and how long to wait before the next attempt."""

from __future__ import annotations

import datetime
import enum
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Callable, Optional

import backoff

__all__ = [
    "MAX_RETRY_AFTER_S",
    "Clock",
    "Outcome",
    "RetryPolicy",
    "classify",
    "full_jitter",
    "parse_retry_after",
]

#: The longest Retry-After we honour; a larger value is treated as this.
MAX_RETRY_AFTER_S = 300.0

_RETRYABLE_4XX = frozenset({408, 410, 429, 460})
_NEVER_RETRIED_5XX = frozenset({501, 505})


class Outcome(enum.Enum):
    """What to do with a batch after a response."""

    DELIVERED = "delivered"
    RETRY = "retry"
    SPLIT = "split"  # 413: halve the batch and send the halves
    REJECTED = "rejected"


def classify(status: int) -> Outcome:
    """Classify an HTTP status the way Segment's current server SDKs do.

    2xx delivered; 408, 410, 429, 460 and every 5xx but 501 and 505 retried;
    413 split; every other status (400, 401, 403, 404, 422, 3xx, ...) rejected.
    """
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if status == 413:
        return Outcome.SPLIT
    if status in _RETRYABLE_4XX or (500 <= status < 600 and status not in _NEVER_RETRIED_5XX):
        return Outcome.RETRY
    return Outcome.REJECTED


def parse_retry_after(value: Optional[str], wall_clock: Callable[[], float] = time.time) -> Optional[float]:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP-date), capped at 300 s.

    Returns None when the header is absent or unreadable.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:  # "-0000" parses as naive; it means UTC
            when = when.replace(tzinfo=datetime.timezone.utc)
        seconds = when.timestamp() - wall_clock()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


class Clock:
    """Time as the delivery pipeline sees it: injectable so tests never sleep."""

    def monotonic(self) -> float:
        """Seconds on a monotonic clock."""
        return time.monotonic()

    def time(self) -> float:
        """Wall-clock seconds since the epoch (for HTTP-date Retry-After values)."""
        return time.time()

    def wait(self, seconds: float, interrupt: threading.Event) -> bool:
        """Wait ``seconds``; False if ``interrupt`` was set (shutdown), else True."""
        if seconds > 0:
            return not interrupt.wait(seconds)
        return not interrupt.is_set()


def full_jitter(delay: float) -> float:
    """A delay drawn uniformly from [0, ``delay``): clients that failed together retry apart."""
    return delay * random.random()


@dataclass
class RetryPolicy:
    """How many times and how long to retry a batch.

    Delays grow from ``base_delay_s`` by ``multiplier`` per retry up to
    ``max_delay_s``, and each is drawn by ``jitter`` below its step (full jitter):
    with the defaults the steps are 15 ms, 45 ms, 135 ms, 405 ms, 1.2 s, 3.6 s,
    11 s, 33 s, then 60 s, so a short burst of errors costs well under 3 s while
    a sustained outage is retried about once a minute. No delay runs past the
    ``max_total_backoff_s`` budget.

    Attributes:
        max_retries: retries after the first attempt for network errors and
            retryable statuses (Retry-After waits and the immediate retry of a
            stale keep-alive connection do not count).
        base_delay_s: the first backoff step.
        multiplier: how much each step grows over the previous one.
        max_delay_s: the longest single backoff delay.
        max_total_backoff_s: give up on a batch once it has been failing this long.
        max_rate_limit_s: give up once Retry-After waits for one batch add up past this.
        jitter: maps a step to the delay actually waited (``full_jitter``: uniform below it).
    """

    max_retries: int = 10
    base_delay_s: float = 0.015
    multiplier: float = 3.0
    max_delay_s: float = 60.0
    max_total_backoff_s: float = 43200.0
    max_rate_limit_s: float = 1800.0
    jitter: Callable[[float], float] = field(default=full_jitter)

    def steps(self) -> Iterator[float]:
        """The backoff steps for one batch, before jitter: 0.015, 0.045, 0.135, ... up to ``max_delay_s``."""
        schedule = backoff.expo(base=self.multiplier, factor=self.base_delay_s, max_value=self.max_delay_s)
        next(schedule)  # backoff's generators yield None first
        for step in schedule:
            yield float(step)

    def delays(self) -> Iterator[float]:
        """The delays to wait for one batch: each step, jittered, never over ``max_delay_s``."""
        for step in self.steps():
            yield min(max(0.0, self.jitter(step)), self.max_delay_s)
