"""Counters of what happened to every message, and the one place a drop or a warning is reported.

Two hooks receive reports, as the client's options:

* ``on_error(error, messages)`` -- delivery failures only (``rejected``,
  ``retries_exhausted``), as segment-analytics-python reports them: called on the
  delivery thread once per failed batch, with an error carrying ``status``,
  ``code`` and ``message``.
* ``on_drop(reason, error, messages)`` -- everything else: messages refused at the
  call (``invalid``, ``encode_error``, ``oversize``, ``queue_full``,
  ``after_shutdown``, ``spool_write_failed``), lost from the disk spool
  (``spool_corrupt``), filtered by a ``before_send`` hook, dropped when
  ``shutdown()``'s deadline passed, and the warnings about accepted messages
  (``coerced``, ``value_dropped``). Reports of one reason are delivered at most
  once per ``REPORT_INTERVAL_S``: the first at once, the ones after it together in
  one later call (at the next report after the interval, after a batch is sent, or
  at ``flush()``/``shutdown()``). So an overloaded client never calls user code
  once per message on the caller's thread.

``stats()`` counts everything, whether or not a hook is set. Delivery observers
(``segment_lite.observe``) are told of deliveries, retries, drops, settled batches
and a drained queue, on a thread of their own.
"""

from __future__ import annotations

import base64
import collections
import json
import logging
import re
import threading
import time
from collections.abc import Sequence
from typing import Any, Callable, Optional, Union
from urllib.parse import quote, unquote, urlsplit

from segment_lite.errors import SegmentLiteError
from segment_lite.observe import ObserverThread

__all__ = [
    "DELIVERY_FAILURES",
    "DELIVERY_SECONDS_BUCKETS",
    "DROP_REASONS",
    "MAX_ISSUED_SECRETS",
    "MAX_MESSAGES_PER_REPORT",
    "MIN_DERIVED_SECRET_CHARS",
    "REPORT_INTERVAL_S",
    "WARNING_REASONS",
    "Credentials",
    "Ledger",
    "OnDrop",
    "OnError",
]

#: Why a message was not delivered. The first nine refuse a message at the call
#: (it was never accepted); the rest drop one that was accepted.
DROP_REASONS = (
    "invalid",  # a required field missing or of the wrong type
    "encode_error",  # a value that cannot be encoded to JSON (strict mode)
    "oversize",  # over 32 KB encoded
    "queue_full",  # no room in the queue (count or bytes)
    "after_shutdown",  # tracked after shutdown()
    "spool_write_failed",  # the disk spool could not write it (disk full, I/O error)
    "plan_violation",  # breaks the tracking plan (on_violation="drop" or "raise")
    "unplanned",  # a track event the tracking plan does not list (on_unplanned="drop")
    "consent_denied",  # in a consent category the user did not grant (on_denied="drop")
    "rejected",  # the server answered a status that is not retried (see rejected_by_status)
    "retries_exhausted",  # retryable failures outlasted max_retries or the time budget
    "shutdown_timeout",  # still undelivered when shutdown()'s deadline passed
    "spool_corrupt",  # unreadable in the disk spool (its database corrupted on disk)
)
#: Drops reported to ``on_error`` (delivery failures, as the reference reports them);
#: every other report goes to ``on_drop``.
DELIVERY_FAILURES = frozenset({"rejected", "retries_exhausted"})
#: Messages accepted and sent, but not as given (``strict=False``).
WARNING_REASONS = (
    "coerced",  # an input strict mode refuses, accepted as segment-analytics-python accepts it
    "value_dropped",  # a value that cannot be encoded was left out; the rest was sent
    "plan_violation_sent",  # breaks the tracking plan, sent anyway (on_violation="send" or "warn")
    "unplanned_sent",  # not in the tracking plan, sent anyway (on_unplanned="send" or "warn")
)
#: Upper bounds (seconds) of the histogram of the time from taking a batch off the
#: queue to settling it (``stats()["delivery_seconds"]``), retries and waits included.
DELIVERY_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
#: The shortest time between two ``on_drop`` calls for one reason.
REPORT_INTERVAL_S = 1.0
#: The most messages one ``on_drop`` call carries; the rest of a burst is only counted.
MAX_MESSAGES_PER_REPORT = 1000

OnError = Callable[[BaseException, list[Any]], Any]
OnDrop = Callable[[str, BaseException, list[Any]], Any]
Reported = Union[bytes, dict[str, Any]]
_Report = tuple[str, BaseException, list["Reported"], int]  # reason, error, messages, count

# How loudly each reason is logged when its report is delivered. Refusals at the
# call raise to the caller already; a filtered message is the user's choice.
_LOG_LEVELS = {
    "invalid": logging.DEBUG,
    "encode_error": logging.DEBUG,
    "oversize": logging.DEBUG,
    "filtered": logging.DEBUG,
    "plan_violation_sent": logging.DEBUG,  # on_violation="warn" logs each one itself
    "unplanned_sent": logging.DEBUG,
    "shutdown_timeout": logging.ERROR,
    "spool_write_failed": logging.ERROR,
    "spool_corrupt": logging.ERROR,
}


#: An encoding of a secret (base64, JSON-escaped, ...) shorter than this is not masked: it
#: would match ordinary words. Every encoding of a write key of 5 characters or more is longer.
MIN_DERIVED_SECRET_CHARS = 8
#: Issued secrets (OAuth tokens and assertions) remembered, newest first: older ones have
#: expired long ago, and a long-lived process must not grow the list without bound.
MAX_ISSUED_SECRETS = 64
#: Characters that continue a word around a secret: a match inside a longer word is not masked.
_WORD = "A-Za-z0-9_-"


def _encodings(secret: str) -> list[str]:
    """``secret`` in every form a client sends it, or a server may echo it back.

    As is (the body's ``writeKey``, a Bearer token); JSON-escaped; percent-encoded;
    and base64 (standard and URL-safe, with and without padding) of ``secret:``
    (HTTP Basic, as the write key is sent) and of ``secret`` alone.
    """
    forms = [json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1], quote(secret, safe="")]
    for raw in (f"{secret}:".encode(), secret.encode()):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(raw).decode("ascii")
            forms += [encoded, encoded.rstrip("=")]
    derived = [form for form in forms if form != secret and len(form) >= MIN_DERIVED_SECRET_CHARS]
    return [secret, *dict.fromkeys(derived)]


class Credentials:
    """The credentials one client sends, masked (``***``) in every text for a log, an error or a repr.

    A write key goes out in the body and base64-encoded in ``Authorization: Basic``;
    with OAuth, a Bearer token and a signed client assertion (a JWT) go out instead.
    A server may echo any of them in an error body, so each is masked in every
    form :func:`_encodings` lists. Only whole occurrences are masked (not inside a
    longer word), so a short key cannot garble unrelated words. Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[str, None] = {}  # write keys and private keys: masked for the client's life
        self._issued: collections.deque[str] = collections.deque(maxlen=MAX_ISSUED_SECRETS)
        # (forms, pattern), replaced as one: redact() reads it without the lock.
        self._state: tuple[tuple[str, ...], re.Pattern[str]] = ((), re.compile("(?!)"))

    def add(self, secret: str) -> None:
        """Mask ``secret`` (a write key) and its encodings from now on, for as long as this client lives."""
        with self._lock:
            if secret and secret not in self._kept:
                self._kept[secret] = None
                self._rebuild()

    def add_issued(self, secret: str) -> None:
        """Mask a short-lived ``secret`` (an OAuth token or assertion) while among the newest issued."""
        with self._lock:
            if secret and secret not in self._issued:
                self._issued.appendleft(secret)
                self._rebuild()

    def add_proxy_credentials(self, proxy_url: str) -> None:
        """Mask the password in ``proxy_url`` (``http://user:password@host``) and ``user:password``."""
        try:
            parts = urlsplit(proxy_url)
            username, password = parts.username, parts.password
        except ValueError:  # not a URL the transports could use either
            return
        if password:
            for secret in {password, unquote(password)}:
                self.add(secret)
                self.add(f"{unquote(username or '')}:{secret}")

    def add_private_key(self, pem: str) -> None:
        """Mask a private key (never sent, but an error could quote it): the whole text and each long line."""
        lines = [line.strip() for line in pem.strip().splitlines()]
        with self._lock:
            for part in [pem.strip(), *(line for line in lines if len(line) >= 16 and "-----" not in line)]:
                self._kept.setdefault(part, None)
            self._rebuild()

    def after_fork(self) -> None:
        """In a forked child: a new lock (the parent's may have been held by a thread that is gone)."""
        self._lock = threading.Lock()

    def _rebuild(self) -> None:
        forms: dict[str, None] = {}
        for secret in (*self._kept, *self._issued):
            for form in _encodings(secret):
                forms[form] = None
        ordered = sorted(forms, key=len, reverse=True)  # the longest form wins where two overlap
        alternatives = "|".join(re.escape(form) for form in ordered)
        pattern = re.compile(rf"(?<![{_WORD}])(?:{alternatives})(?![{_WORD}])" if ordered else "(?!)")
        self._state = (tuple(ordered), pattern)

    def redact(self, text: str) -> str:
        """``text`` with every credential, in every form, replaced by ``***``."""
        forms, pattern = self._state
        for form in forms:
            if form in text:
                return pattern.sub("***", text)
        return text

    def scrub(self, error: BaseException) -> BaseException:
        """Mask credentials in ``error``'s text and its text attributes, in place; returns it.

        For the library's own errors, before a hook or the caller sees them: an
        ``APIError``'s ``code`` comes from the server's answer as much as its ``message``.
        """
        if not isinstance(error, SegmentLiteError) or not self._state[0]:
            return error
        error.args = tuple(self.redact(arg) if isinstance(arg, str) else arg for arg in error.args)
        for name in ("code", "message", "last_error"):
            value = getattr(error, name, None)
            if isinstance(value, str):
                try:
                    setattr(error, name, self.redact(value))
                except AttributeError:  # a read-only attribute (a class constant)
                    pass
        return error


class _Pending:
    """Reports of one reason waiting for their interval to pass."""

    __slots__ = ("count", "error", "messages")

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.messages: list[Reported] = []
        self.count = 0


class Ledger:
    """Thread-safe counters plus the reporting of drops and warnings to the hooks and the log."""

    def __init__(
        self,
        on_error: Optional[OnError],
        log: logging.Logger,
        secret: str = "",
        *,
        on_drop: Optional[OnDrop] = None,
        monotonic: Callable[[], float] = time.monotonic,
        credentials: Optional[Credentials] = None,
        observers: Optional[list[Any]] = None,
    ) -> None:
        self._on_error = on_error
        self._on_drop = on_drop
        self._log = log
        self._monotonic = monotonic
        #: The clock batches are timed with (the client's).
        self.monotonic = monotonic
        #: The observers (shared with the pipeline, which may add to it later).
        self.observers: list[Any] = [] if observers is None else observers
        self._events = ObserverThread(self.observers, self.count, log)
        self.credentials = Credentials() if credentials is None else credentials
        if secret:
            self.add_secret(secret)
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {
            "accepted_sync": 0,
            "delivered": 0,
            "retried": 0,
            "batches": 0,
            "filtered": 0,
            "hook_errors": 0,
            "observer_errors": 0,
            "observer_overflow": 0,
            "sent_bytes": 0,
        }
        self._latency_buckets = [0] * (len(DELIVERY_SECONDS_BUCKETS) + 1)  # the last: above every bound
        self._latency_sum = 0.0
        self._dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self._warnings: dict[str, int] = dict.fromkeys(WARNING_REASONS, 0)
        self._by_status: dict[int, int] = {}
        self._pending: dict[str, _Pending] = {}
        self._last_report: dict[str, float] = {}

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name``."""
        with self._lock:
            self._counts[name] += n
        if name == "retried" and self.observers:
            self._events.emit("retried")

    def delivered(self, n: int) -> None:
        """Record a batch of ``n`` messages the server accepted."""
        with self._lock:
            self._counts["delivered"] += n
            self._counts["batches"] += 1
        if self.observers:
            self._events.emit("delivered", n)

    def batch_settled(self, count: int, delivered: int, nbytes: int, seconds: float) -> None:
        """Record a batch taken from the queue and now settled: its bytes and how long it took."""
        bucket = 0
        for bound in DELIVERY_SECONDS_BUCKETS:
            if seconds <= bound:
                break
            bucket += 1
        with self._lock:
            self._counts["sent_bytes"] += nbytes
            self._latency_buckets[bucket] += 1
            self._latency_sum += seconds
        if self.observers:
            self._events.emit("batch_settled", count, delivered, nbytes, seconds)

    def drained(self) -> None:
        """Tell the observers the queue is empty and nothing is in flight."""
        if self.observers:
            self._events.emit("drained")

    def wait_observers(self, timeout_s: float) -> bool:
        """Wait until the observers were handed every event so far; False if ``timeout_s`` passed first."""
        return self._events.wait_idle(timeout_s)

    def stop_observers(self, timeout_s: Optional[float] = 1.0) -> bool:
        """Hand the observers what is queued (waiting at most ``timeout_s``), then stop their thread."""
        return self._events.stop(timeout_s)

    def drop(
        self,
        reason: str,
        exc: BaseException,
        messages: Sequence[Reported],
        status: Optional[int] = None,
        count: Optional[int] = None,
        report: bool = True,
    ) -> None:
        """Count ``messages`` (or ``count`` of them) as dropped for ``reason`` and report them.

        Delivery failures go to the log and ``on_error`` at once; any other reason
        is reported as :meth:`report` does. ``report=False`` only counts (for a
        failure raised to the caller instead, as in sync mode).
        """
        n = len(messages) if count is None else count
        self.credentials.scrub(exc)  # before any hook, log or caller (sync mode raises it) sees it
        with self._lock:
            self._dropped[reason] = self._dropped.get(reason, 0) + n
            if status is not None:
                self._by_status[status] = self._by_status.get(status, 0) + n
        if self.observers:
            self._events.emit("dropped", reason, n)
        if not report:
            return
        if reason in DELIVERY_FAILURES:
            self._log.error("dropped %d message(s) (%s): %s", n, reason, self.redact(str(exc)))
            if self._on_error:
                try:
                    self._on_error(exc, [_as_dict(m) for m in messages])
                except Exception:
                    self._log.exception("on_error callback raised")
            return
        self.report(reason, exc, messages, count=n)

    def warn(
        self, reason: str, exc: BaseException, messages: Sequence[Reported], count: Optional[int] = None
    ) -> None:
        """Count accepted ``messages`` (or ``count`` of them) that were changed (``reason``); report them."""
        n = len(messages) if count is None else count
        with self._lock:
            self._warnings[reason] = self._warnings.get(reason, 0) + n
        self.report(reason, exc, messages, count=n)

    def report(
        self, reason: str, exc: BaseException, messages: Sequence[Reported], count: Optional[int] = None
    ) -> None:
        """Log ``reason`` and hand it to ``on_drop``, at most once per ``REPORT_INTERVAL_S`` per reason.

        The first report of a reason is delivered at once; later ones within the
        interval are held (up to ``MAX_MESSAGES_PER_REPORT`` messages) and
        delivered together once it has passed. Counting is the caller's job.
        """
        n = len(messages) if count is None else count
        self.credentials.scrub(exc)
        now = self._monotonic()
        with self._lock:
            pending = self._pending.get(reason)
            due = now - self._last_report.get(reason, -REPORT_INTERVAL_S) >= REPORT_INTERVAL_S
            if pending is None and due:
                self._last_report[reason] = now
                deliver: list[_Report] = [(reason, exc, list(messages), n)]
            else:
                if pending is None:
                    pending = self._pending[reason] = _Pending(exc)
                pending.error = exc
                room = MAX_MESSAGES_PER_REPORT - len(pending.messages)
                if room > 0:
                    pending.messages.extend(messages[:room])
                pending.count += n
                deliver = self._take_due(now) if due else []
        for item in deliver:
            self._deliver(*item)

    def deliver_due_reports(self) -> None:
        """Deliver held reports whose interval has passed (called after each batch is sent)."""
        self._deliver_held(every=False)

    def flush_reports(self) -> None:
        """Deliver every held report now (at ``flush()`` and ``shutdown()``)."""
        self._deliver_held(every=True)

    def _deliver_held(self, every: bool) -> None:
        if not self._pending:  # read without the lock: a hint, checked again under it
            return
        now = self._monotonic()
        with self._lock:
            deliver = self._take_due(now, every)
        for item in deliver:
            self._deliver(*item)

    def _take_due(self, now: float, every: bool = False) -> list[_Report]:
        due: list[_Report] = []
        for reason, pending in list(self._pending.items()):
            if every or now - self._last_report.get(reason, -REPORT_INTERVAL_S) >= REPORT_INTERVAL_S:
                del self._pending[reason]
                self._last_report[reason] = now
                due.append((reason, pending.error, pending.messages, pending.count))
        return due

    def _deliver(self, reason: str, exc: BaseException, messages: list[Reported], n: int) -> None:
        level = _LOG_LEVELS.get(reason, logging.WARNING)
        if self._log.isEnabledFor(level):
            what = "message(s) changed" if reason in WARNING_REASONS else "message(s) dropped"
            self._log.log(level, "%d %s (%s): %s", n, what, reason, self.redact(str(exc)))
        if self._on_drop:
            try:
                self._on_drop(reason, exc, [_as_dict(m) for m in messages])
            except Exception:
                self._log.exception("on_drop callback raised")

    def redact(self, text: str) -> str:
        """``text`` with the credentials masked in every form sent, for a log or an error.

        See :class:`Credentials`: the write key as is, JSON-escaped, percent-encoded and
        in base64 (HTTP Basic), and OAuth tokens and assertions. Only whole
        occurrences are masked (not inside a longer word), so a short key cannot
        garble unrelated words.
        """
        return self.credentials.redact(text)

    def add_secret(self, secret: str) -> None:
        """Mask ``secret`` too (a write key assigned later; the earlier ones stay masked)."""
        self.credentials.add(secret)

    def snapshot(self, accepted_async: int, queued: int, queued_bytes: int) -> dict[str, Any]:
        """The counters as a plain dict (see ``Client.stats``)."""
        with self._lock:
            counts = dict(self._counts)
            dropped = dict(self._dropped)
            warnings = dict(self._warnings)
            by_status = dict(self._by_status)
            buckets = list(self._latency_buckets)
            latency_sum = self._latency_sum
        accepted_sync = counts.pop("accepted_sync")
        cumulative = 0
        histogram: dict[str, int] = {}
        for bound, in_bucket in zip((*DELIVERY_SECONDS_BUCKETS, float("inf")), buckets):
            cumulative += in_bucket
            histogram[repr(bound)] = cumulative
        return {
            "accepted": accepted_async + accepted_sync,
            "delivered": counts["delivered"],
            "queued": queued,
            "queued_bytes": queued_bytes,
            "retried": counts["retried"],
            "batches": counts["batches"],
            "filtered": counts["filtered"],
            "hook_errors": counts["hook_errors"],
            "observer_errors": counts["observer_errors"],
            "observer_overflow": counts["observer_overflow"],
            "sent_bytes": counts["sent_bytes"],
            "delivery_seconds": {"count": cumulative, "sum": latency_sum, "buckets": histogram},
            "dropped": dropped,
            "dropped_total": sum(dropped.values()),
            "warnings": warnings,
            "rejected_by_status": by_status,
        }


def _as_dict(message: Reported) -> Any:
    if isinstance(message, bytes):
        try:
            return json.loads(message)
        except (ValueError, RecursionError):  # RecursionError: nested past any limit (an old spool)
            return {"raw": message.decode("utf-8", "replace")}
    return message
