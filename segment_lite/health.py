"""Whether delivery is failing, told once: a WARNING when an outage starts, a summary when it ends."""

from __future__ import annotations

import logging
import threading
from typing import Optional

from segment_lite.retry import Clock

__all__ = ["REMINDER_INTERVAL_S", "DeliveryHealth"]

#: While an outage lasts, at most one reminder WARNING per this many seconds.
REMINDER_INTERVAL_S = 60.0


class DeliveryHealth:
    """The delivery state shared by every sender of one client.

    The first failed attempt of an outage logs one WARNING naming its cause
    (``connection refused to 127.0.0.1:8080``, ``401 unknown write key from ...``);
    later failures are only counted, with at most one reminder per
    ``REMINDER_INTERVAL_S``; the first success after them logs one line that
    summarises the outage. A server that flaps does not flood the log either:
    an outage starting within ``REMINDER_INTERVAL_S`` of the last warning is
    logged (start and end) at DEBUG only, until the next reminder is due.
    ``last_error`` keeps the latest cause, so a drop at shutdown or exit can name it.
    """

    def __init__(self, log: logging.Logger, clock: Clock) -> None:
        self._log = log
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0  # failed attempts in the current outage; 0 when healthy
        self._since = 0.0  # monotonic time of the outage's first failure
        self._warned_at: Optional[float] = None  # when the last WARNING was logged
        self._outage_warned = False  # whether this outage's start was logged as a WARNING
        self.last_error: Optional[str] = None
        self.last_rejection: Optional[str] = None

    @property
    def failing(self) -> bool:
        """True between a failed attempt and the next success."""
        return self._failures > 0

    def failed(self, cause: str) -> None:
        """Record a failed attempt (no answer, a retryable status, or a refusal of the whole client)."""
        now = self._clock.monotonic()
        with self._lock:
            self.last_error = cause
            self._failures += 1
            failures = self._failures
            quiet = self._warned_at is not None and now - self._warned_at < REMINDER_INTERVAL_S
            if failures == 1:
                self._since = now
                self._outage_warned = start = not quiet
                remind = False
            else:
                start = False
                remind = not quiet
                self._outage_warned = self._outage_warned or remind
            if start or remind:
                self._warned_at = now
            since = self._since
        if start:
            self._log.warning(
                "delivery failing: %s; retrying with backoff (further failures are summarised)", cause
            )
        elif remind:
            self._log.warning(
                "delivery still failing after %d attempt(s) over %.0fs; last error: %s",
                failures,
                now - since,
                cause,
            )
        else:
            self._log.debug("attempt failed: %s", cause)

    def rejected(self, error: str) -> None:
        """Record a refusal the server answered (kept for the flush summary)."""
        with self._lock:
            self.last_rejection = error

    def succeeded(self) -> None:
        """Record a delivered batch: ends an outage, with its summary."""
        if not self._failures:  # the common case, without the lock
            return
        now = self._clock.monotonic()
        with self._lock:
            failures, self._failures = self._failures, 0
            since, cause, warned = self._since, self.last_error, self._outage_warned
        if failures:
            self._log.log(
                logging.WARNING if warned else logging.DEBUG,
                "delivery recovered after %d failed attempt(s) over %.1fs; last error: %s",
                failures,
                now - since,
                cause,
            )
