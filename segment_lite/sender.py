"""Send one batch: build the body, classify the answer, retry, split, and account for every message."""

from __future__ import annotations

import base64
import gzip as gzip_module
import json
import logging
import threading
from typing import Optional

from segment_lite.errors import APIError, RetriesExhaustedError, ShutdownError
from segment_lite.ledger import Ledger
from segment_lite.message import iso_from_epoch
from segment_lite.queue import Batch, MessageQueue
from segment_lite.retry import Clock, Outcome, RetryPolicy, classify, parse_retry_after
from segment_lite.transport import Transport, TransportError, TransportFactory
from segment_lite.version import VERSION

__all__ = ["MAX_BATCH_BYTES", "MAX_BATCH_COUNT", "BatchSender", "PipelinePause"]

#: Segment's limits for one batch request.
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_COUNT = 2500
GZIP_LEVEL = 1  # measured: most of the size win of level 6 for a third of its CPU


class PipelinePause:
    """A Retry-After deadline shared by every sender of one client."""

    def __init__(self) -> None:
        self.until = 0.0
        self._lock = threading.Lock()

    def extend(self, until: float) -> None:
        """Pause the pipeline until at least ``until`` (monotonic seconds)."""
        with self._lock:
            if until > self.until:
                self.until = until


class BatchSender:
    """Posts batches of encoded messages and owns the whole retry policy.

    Every batch ends settled: delivered, or dropped through the ledger (which
    counts it and calls ``on_error``). Nothing else in the library retries.
    """

    def __init__(
        self,
        *,
        url: str,
        write_key: str,
        gzip: bool,
        timeout: float,
        policy: RetryPolicy,
        clock: Clock,
        transport_factory: TransportFactory,
        ledger: Ledger,
        pause: PipelinePause,
        log: logging.Logger,
    ) -> None:
        self.url = url
        self.gzip = gzip
        self.timeout = timeout
        self.policy = policy
        self.clock = clock
        self.ledger = ledger
        self.pause = pause
        self.log = log
        self._transport_factory = transport_factory
        self._transport: Optional[Transport] = None
        self._keep_cut_short = False  # the batch being sent comes from a durable queue
        self._cut_short = False  # part of it was cut short by shutdown or a deadline, and kept
        credentials = base64.b64encode(f"{write_key}:".encode()).decode("ascii")
        self._headers = {
            "Content-Type": "application/json",
            "User-Agent": f"segment-lite/{VERSION}",
            "Authorization": f"Basic {credentials}",
        }
        if gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._key_suffix = b'","writeKey":' + json.dumps(write_key).encode() + b"}"

    @staticmethod
    def envelope_bytes(write_key: str) -> int:
        """Bytes a batch body adds around its messages, for a key of this length."""
        return len(b'{"batch":[],"sentAt":"2000-01-01T00:00:00.000Z","writeKey":""}') + len(
            json.dumps(write_key)
        )

    def _body(self, items: list[bytes]) -> bytes:
        # The batch body is a join of the already-encoded messages; sentAt is
        # stamped now, at each attempt, so the server's clock-skew fix stays right.
        sent_at = iso_from_epoch(self.clock.time()).encode()
        body = b"".join((b'{"batch":[', b",".join(items), b'],"sentAt":"', sent_at, self._key_suffix))
        if self.log.isEnabledFor(logging.DEBUG):
            # Logged without the write key.
            shown = b"".join((b'{"batch":[', b",".join(items), b'],"sentAt":"', sent_at, b'"}'))
            self.log.debug("posting %d message(s) to %s: %s", len(items), self.url, shown.decode())
        return body

    def close(self) -> None:
        """Close the transport's connections."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def send(self, items: list[bytes], abort: threading.Event, deadline: Optional[float] = None) -> bool:
        """Deliver ``items``, retrying as the policy says; True if all were delivered.

        Waits are cut short by ``abort`` (shutdown) or by ``deadline`` (monotonic
        seconds): what is then undelivered is dropped as ``shutdown_timeout``.
        """
        parts = [items]
        all_delivered = True
        while parts:
            part = parts.pop(0)
            if abort.is_set():
                self._drop_for_shutdown(part)
                all_delivered = False
                continue
            outcome = self._send_part(part, abort, deadline)
            if outcome is Outcome.SPLIT:
                middle = len(part) // 2
                parts[:0] = [part[:middle], part[middle:]]
            elif outcome is not Outcome.DELIVERED:
                all_delivered = False
        return all_delivered

    def send_batch(
        self, queue: MessageQueue, batch: Batch, abort: threading.Event, deadline: Optional[float] = None
    ) -> None:
        """Send a batch taken from ``queue`` and mark it settled there, whatever happens.

        A durable queue keeps a batch that shutdown or ``deadline`` cut short
        (for a later attempt or the next process) instead of it being dropped.
        """
        self._keep_cut_short = queue.durable
        self._cut_short = False
        try:
            self.send(batch.items, abort, deadline)
        except Exception as exc:  # a bug must not lose the batch silently
            self.log.exception("unexpected error while sending a batch")
            self.ledger.drop("retries_exhausted", exc, batch.items)
        finally:
            self._keep_cut_short = False
            queue.done(batch, keep=self._cut_short)

    def _drop_for_shutdown(self, part: list[bytes]) -> None:
        if self._keep_cut_short:
            self._cut_short = True  # still in the durable queue: not lost, so not dropped
            return
        self.ledger.drop("shutdown_timeout", ShutdownError("shutdown deadline passed before delivery"), part)

    def _wait(self, seconds: float, abort: threading.Event, deadline: Optional[float]) -> bool:
        """Wait before the next attempt; False if shutdown or ``deadline`` comes first."""
        if deadline is not None and self.clock.monotonic() + seconds > deadline:
            return False
        return self.clock.wait(seconds, abort)

    def _send_part(self, part: list[bytes], abort: threading.Event, deadline: Optional[float]) -> Outcome:
        clock = self.clock
        policy = self.policy
        delays = policy.delays()
        attempt = 0  # requests made, for X-Retry-Count
        counted = 0  # retries that count against max_retries
        first_failure: Optional[float] = None
        rate_limited_s = 0.0
        stale_retry_used = False
        while True:
            wait = self.pause.until - clock.monotonic()
            if wait > 0 and not self._wait(wait, abort, deadline):
                self._drop_for_shutdown(part)
                return Outcome.REJECTED
            headers = self._headers
            if attempt:
                headers = {**headers, "X-Retry-Count": str(attempt)}
            body = self._body(part)
            if self.gzip:
                body = gzip_module.compress(body, compresslevel=GZIP_LEVEL)
            attempt += 1
            retry_after: Optional[float] = None
            if self._transport is None:
                self._transport = self._transport_factory()
            try:
                response = self._transport.post(self.url, body, headers, self.timeout)
            except TransportError as exc:
                if exc.stale_connection and not stale_retry_used:
                    # A reused keep-alive connection the server had closed: almost
                    # always while idle, before our request; try again at once
                    # (the server deduplicates by messageId if it did get it).
                    stale_retry_used = True
                    self.ledger.count("retried")
                    self.log.debug("kept-alive connection was closed by the server; retrying at once")
                    continue
                last_error = self.ledger.redact(str(exc))
            else:
                status = response.status
                outcome = classify(status)
                if outcome is Outcome.DELIVERED:
                    self.ledger.delivered(len(part))
                    return outcome
                if outcome is Outcome.SPLIT and len(part) > 1:
                    self.log.info("server answered 413 for %d messages; splitting the batch", len(part))
                    return outcome
                if outcome is not Outcome.RETRY:
                    error = self._api_error(status, response.body, response.headers.get("Location"))
                    self.ledger.drop("rejected", error, part, status=status)
                    return Outcome.REJECTED
                last_error = f"HTTP {status}"
                retry_after = parse_retry_after(response.headers.get("Retry-After"), clock.time)
            self.ledger.count("retried")
            now = clock.monotonic()
            if retry_after:
                # The server said when to come back: pause every sender of this
                # client until then. Not counted against max_retries; bounded by
                # max_rate_limit_s instead.
                rate_limited_s += retry_after
                if rate_limited_s > policy.max_rate_limit_s:
                    self._exhausted(part, attempt, f"{last_error}; Retry-After waits exceeded the budget")
                    return Outcome.REJECTED
                self.log.warning("%s with Retry-After %.1fs; pausing uploads", last_error, retry_after)
                self.pause.extend(now + retry_after)
                continue
            if first_failure is None:
                first_failure = now
            counted += 1
            if counted > policy.max_retries or now - first_failure >= policy.max_total_backoff_s:
                self._exhausted(part, attempt, last_error)
                return Outcome.REJECTED
            delay = next(delays)
            self.log.debug("attempt %d failed (%s); retrying in %.2fs", attempt, last_error, delay)
            if not self._wait(delay, abort, deadline):
                self._drop_for_shutdown(part)
                return Outcome.REJECTED

    def _exhausted(self, part: list[bytes], attempts: int, last_error: str) -> None:
        self.ledger.drop("retries_exhausted", RetriesExhaustedError(attempts, last_error), part)

    def _api_error(self, status: int, body: bytes, location: Optional[str] = None) -> APIError:
        if 300 <= status < 400:
            return APIError(
                status,
                "redirect",
                f"the server redirected to {location or '(no Location)'}; set host to the final URL "
                "(redirects are not followed, so a batch is never silently re-sent as a GET)",
            )
        code, message = "unknown", body.decode("utf-8", "replace")[:500]
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            code = str(payload.get("code", code))
            message = str(payload.get("message", message))
        return APIError(status, code, self.ledger.redact(message))
