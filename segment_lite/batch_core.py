"""One batch's delivery as steps without I/O: the body, the answers' effects, settling every message.

``BatchCore.steps`` is a generator that yields what to do next (``Post`` a body,
``Wait`` some seconds) and is sent back what came of it (a ``TransportResponse``
or a ``TransportError``; whether the wait ran its course). The threaded sender
(``sender.BatchSender``) and the asyncio one (``async_sender.AsyncBatchSender``)
each drive it with their own I/O, so retry classification, Retry-After, 413
splitting, 400 bisection and loss accounting exist once, here and in ``delivery``.
"""

from __future__ import annotations

import base64
import collections
import gzip as gzip_module
import json
import logging
import threading
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Callable, Optional, Union
from urllib.parse import urlsplit

from segment_lite.delivery import Action, Attempt, BatchProgress, Decision, Failure, Part, RetryBudget, decide
from segment_lite.errors import (
    APIError,
    OAuthError,
    RetriesExhaustedError,
    SegmentLiteError,
    ShutdownError,
    api_error_fields,
)
from segment_lite.health import DeliveryHealth
from segment_lite.ledger import Ledger
from segment_lite.limits import MAX_BATCH_BYTES, MAX_BATCH_MESSAGES
from segment_lite.retry import Clock, RetryPolicy, parse_retry_after
from segment_lite.timestamps import iso_from_epoch
from segment_lite.transport import (
    Aborted,
    ConnectionClosed,
    StaleConnection,
    TransportError,
    TransportResponse,
)
from segment_lite.version import VERSION

__all__ = [
    "GZIP_LEVEL",
    "MAX_BATCH_COUNT",
    "BatchCore",
    "DeliverySteps",
    "PipelinePause",
    "Post",
    "Reply",
    "Settlement",
    "Wait",
    "batch_headers",
]

#: Segment's limits for one batch request (``MAX_BATCH_COUNT`` is the name 2.x-era code imports).
MAX_BATCH_COUNT = MAX_BATCH_MESSAGES
GZIP_LEVEL = 1  # measured: most of the size win of level 6 for a third of its CPU

#: Refusals about the messages in a batch, not about the client: they say nothing of an outage.
_MESSAGE_STATUSES = frozenset({400, 413, 422})
#: The status a batch is refused with when no OAuth token can be had (a bad key, a refused client): the
#: API's answer to a bad credential, so the batch is dropped as ``rejected`` and counted under 401.
_OAUTH_REFUSAL_STATUS = 401
#: The transport's failures as the delivery rules tell them apart (the first that matches).
_FAILURES = ((StaleConnection, Failure.STALE), (ConnectionClosed, Failure.CLOSED))


def batch_headers(write_key: str, gzip: bool) -> dict[str, str]:
    """The headers of a batch request: JSON, our User-Agent, the write key as HTTP Basic auth.

    ``gzip`` adds ``Content-Encoding: gzip`` (the body must then be compressed).
    """
    credentials = base64.b64encode(f"{write_key}:".encode()).decode("ascii")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"segment-lite/{VERSION}",
        "Authorization": f"Basic {credentials}",
    }
    if gzip:
        headers["Content-Encoding"] = "gzip"
    return headers


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


class Settlement:
    """The messages of one taken batch, each settled exactly once: delivered, or dropped with a reason.

    The sender settles parts of it as answers come. A shutdown that gives up
    settles the rest from another thread (``cut_short``). Whichever comes second
    finds those messages settled and counts nothing, so no message is counted
    twice or missed, whatever the interleaving.

    ``durable``: the batch comes from a queue that keeps undelivered messages
    for a later process (the disk spool); what shutdown cuts short is then
    ``kept`` there, not dropped.
    """

    __slots__ = ("_ledger", "_lock", "_open", "_settled", "delivered_count", "durable", "items", "kept")

    def __init__(self, items: list[bytes], ledger: Ledger, durable: bool = False) -> None:
        self.items = items
        self.durable = durable
        self._ledger = ledger
        self._settled = bytearray(len(items))
        self._open = len(items)
        self._lock = threading.Lock()
        self.delivered_count = 0
        self.kept = False  # some messages were cut short and left in the durable queue

    @property
    def complete(self) -> bool:
        """True once every message is settled."""
        return self._open == 0

    def _claim(self, start: int, stop: int) -> list[bytes]:
        """Mark ``items[start:stop]`` settled; those of them that were not already."""
        with self._lock:
            fresh = self._settled.count(0, start, stop)
            if fresh == stop - start:  # the usual case: the whole part
                claimed = self.items[start:stop]
            elif fresh:
                claimed = [
                    item for item, done in zip(self.items[start:stop], self._settled[start:stop]) if not done
                ]
            else:
                return []
            self._settled[start:stop] = b"\x01" * (stop - start)
            self._open -= fresh
            return claimed

    def delivered(self, start: int, stop: int) -> None:
        """Count ``items[start:stop]`` delivered (those not settled already)."""
        fresh = self._claim(start, stop)
        if fresh:
            self.delivered_count += len(fresh)
            self._ledger.delivered(len(fresh), fresh)

    def drop(
        self, reason: str, exc: BaseException, start: int, stop: int, status: Optional[int] = None
    ) -> int:
        """Count ``items[start:stop]`` dropped for ``reason`` and report them (those not settled already).

        Returns how many were dropped.
        """
        lost = self._claim(start, stop)
        if lost:
            self._ledger.drop(reason, exc, lost, status=status)
        return len(lost)

    def drop_rest(self, reason: str, exc: BaseException) -> int:
        """Drop every message not settled yet; returns how many."""
        return self.drop(reason, exc, 0, len(self.items))

    def cut_short(self, exc: BaseException, start: int = 0, stop: Optional[int] = None) -> int:
        """Shutdown gave up on ``items[start:stop]`` (all by default): drop them, or keep them if durable.

        Returns how many were dropped.
        """
        stop = len(self.items) if stop is None else stop
        if not self.durable:
            return self.drop("shutdown_timeout", exc, start, stop)
        if self._claim(start, stop):
            self.kept = True  # still in the durable queue: not lost, so not dropped
        return 0

    def unsettled_parts(self) -> list[tuple[int, int]]:
        """The runs of messages not settled yet, as ``(start, stop)`` pairs."""
        with self._lock:
            settled = bytes(self._settled)
        parts: list[tuple[int, int]] = []
        start = settled.find(0)
        while start != -1:
            stop = settled.find(1, start)
            stop = len(settled) if stop == -1 else stop
            parts.append((start, stop))
            start = settled.find(0, stop)
        return parts


@dataclass(frozen=True)
class Post:
    """Step: send ``body`` with ``headers``, waiting at most ``timeout`` seconds for the answer.

    Reply with the ``TransportResponse``, or the ``TransportError`` raised.
    """

    body: bytes
    headers: Mapping[str, str]
    timeout: float


@dataclass(frozen=True)
class Wait:
    """Step: wait ``seconds`` (may be 0) on the client's clock; reply False if shutdown interrupted it."""

    seconds: float


Step = Union[Post, Wait]
Reply = Union[TransportResponse, TransportError, OAuthError, bool, None]
#: What ``BatchCore.steps`` returns: a generator of steps, sent their outcomes.
DeliverySteps = Generator[Step, Reply, None]


class BatchCore:
    """The I/O-free part of a sender: body, headers, decisions and their effects, for one client.

    Every message ends settled: delivered, or dropped through the ledger (which
    counts it and calls ``on_error``). Nothing else in the library retries.

    A batch the server refuses with 400, or that makes it close the connection
    without an answer twice, is bisected: the halves are sent on their own, and
    so on, until the message(s) it refuses are alone. Only those are dropped (as
    ``rejected``, with the server's message); the rest are delivered. Each bad
    message costs about 2·log2(batch size) extra requests.
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
        ledger: Ledger,
        pause: PipelinePause,
        health: DeliveryHealth,
        log: logging.Logger,
    ) -> None:
        self.url = url
        self.server = urlsplit(url).netloc or url
        self.gzip = gzip
        self.timeout = timeout
        self.policy = policy
        self.clock = clock
        self.ledger = ledger
        self.pause = pause
        self.health = health
        self.log = log
        self._answered_last = True  # whether the latest request got an answer
        self.set_write_key(write_key)

    def set_write_key(self, write_key: str) -> None:
        """Authenticate with ``write_key`` from the next request on."""
        self._headers = batch_headers(write_key, self.gzip)
        self._key_suffix = b'","writeKey":' + json.dumps(write_key).encode() + b"}"

    @staticmethod
    def envelope_bytes(write_key: str) -> int:
        """Bytes a batch body adds around its messages, for a key of this length."""
        return len(b'{"batch":[],"sentAt":"2000-01-01T00:00:00.000Z","writeKey":""}') + len(
            json.dumps(write_key)
        )

    @staticmethod
    def max_batch_bytes(write_key: str) -> int:
        """The most bytes of joined messages one request may carry with this key (within 500 KB)."""
        return MAX_BATCH_BYTES - BatchCore.envelope_bytes(write_key) - 64

    def _body(self, items: list[bytes]) -> bytes:
        # The batch body is a join of the already-encoded messages; sentAt is
        # stamped now, at each attempt, so the server's clock-skew fix stays right.
        sent_at = iso_from_epoch(self.clock.time()).encode()
        tail = b'],"sentAt":"' + sent_at + self._key_suffix
        if items:
            # One join, the envelope glued to the first and last messages: joining the messages
            # and then the envelope around them held two copies of the batch at once, and the
            # second large allocation grew the heap and the frees shrank it again, each request
            # (two brk calls and ~10 page faults: ~100 µs for 82 KB in a loop).
            parts = items.copy()
            parts[0] = b'{"batch":[' + parts[0]
            parts[-1] += tail
            body = b",".join(parts)
        else:
            body = b'{"batch":[' + tail
        if self.log.isEnabledFor(logging.DEBUG):
            # Logged without the write key.
            shown = b"".join((b'{"batch":[', b",".join(items), b'],"sentAt":"', sent_at, b'"}'))
            self.log.debug("posting %d message(s) to %s: %s", len(items), self.url, shown.decode())
        if self.gzip:
            body = gzip_module.compress(body, compresslevel=GZIP_LEVEL)
        return body

    def once_steps(self, items: list[bytes]) -> Generator[Post, Reply, Optional[SegmentLiteError]]:
        """One attempt at ``items``, as segment-analytics-python's sync mode makes it, as steps.

        Returns None when the server accepted them (counted as delivered), else
        the error for the caller to raise: an ``APIError`` for an answer that is
        not 2xx, a ``RetriesExhaustedError`` (one attempt, ``status`` None) when
        none came. Nothing is retried, waited for, counted as dropped or
        reported here; only a kept-alive connection the server had closed is
        replaced at once, as for every request.
        """
        post = Post(self._body(items), self._headers, self.timeout)
        reply = yield post
        if isinstance(reply, StaleConnection):  # closed by the server while idle: once more, at once
            reply = yield post
        if isinstance(reply, TransportError):
            return RetriesExhaustedError(1, self.ledger.redact(str(reply)))
        if isinstance(reply, OAuthError):
            return self._oauth_refusal(reply)
        if not isinstance(reply, TransportResponse):  # pragma: no cover - a driver's bug
            raise TypeError(f"a Post step was answered with {type(reply).__name__}")
        if 200 <= reply.status < 300:
            self.ledger.delivered(len(items), items)
            return None
        return self._api_error(reply.status, reply.body, reply.headers.get("Location"))

    def steps(
        self, settlement: Settlement, aborted: Callable[[], bool], deadline: Optional[float] = None
    ) -> DeliverySteps:
        """Send the unsettled messages of ``settlement``, retrying as the policy says, as steps.

        Every message ends settled, except when ``deadline`` (monotonic seconds)
        comes first: those not yet settled are then left so, for a later call.
        Once ``aborted()`` (shutdown gave up) they are dropped as ``shutdown_timeout``.
        """
        try:
            yield from self._deliver(settlement, aborted, deadline)
        except Exception as exc:  # a bug must not lose messages silently, nor count any twice
            self.log.exception("unexpected error while sending a batch")
            settlement.drop_rest("retries_exhausted", exc)

    def _deliver(
        self, settlement: Settlement, aborted: Callable[[], bool], deadline: Optional[float]
    ) -> DeliverySteps:
        policy = self.policy
        work = collections.deque(
            Part(start, stop, RetryBudget(policy)) for start, stop in settlement.unsettled_parts()
        )
        batch = BatchProgress(alive_before=self._answered_last)
        while work:
            part = work.popleft()
            if aborted():
                self._drop_for_shutdown(settlement, part)
                continue
            batch.others_waiting = any(not other.deferred for other in work)
            action = yield from self._send_part(settlement, part, batch, aborted, deadline)
            if action is Action.SPLIT:
                work.extendleft(reversed(part.halves()))
            elif action is Action.DEFER:
                part.deferred = True
                part.budget = RetryBudget(policy)  # sent again later, as a new request
                work.append(part)
            elif action is None:
                return  # the caller's deadline came first: the rest stays unsettled

    def _drop_for_shutdown(self, settlement: Settlement, part: Part) -> None:
        cause = self.health.last_error
        text = "shutdown deadline passed before delivery" + (f"; last error: {cause}" if cause else "")
        settlement.cut_short(ShutdownError(text), part.start, part.stop)

    def _wait(self, seconds: float, deadline: Optional[float]) -> Generator[Step, Reply, Optional[Action]]:
        """Wait before the next attempt: RETRY_NOW, ABORTED if aborted, None if ``deadline`` comes first.

        When it does, the wait ends at the deadline, on the injected clock, so the flush
        that set it finds its time up (a ``FakeClock`` flush returns at once).
        """
        clock = self.clock
        if deadline is not None and clock.monotonic() + seconds > deadline:
            waited = yield Wait(max(0.0, deadline - clock.monotonic()))
            return None if waited else Action.ABORTED
        waited = yield Wait(seconds)
        return Action.RETRY_NOW if waited else Action.ABORTED

    def _send_part(
        self,
        settlement: Settlement,
        part: Part,
        batch: BatchProgress,
        aborted: Callable[[], bool],
        deadline: Optional[float],
    ) -> Generator[Step, Reply, Optional[Action]]:
        """Send ``part`` until ``decide`` settles, splits or defers it (that action); None at the deadline."""
        clock = self.clock
        items = settlement.items[part.start : part.stop]
        while True:
            wait_s = self.pause.until - clock.monotonic()
            action = (yield from self._wait(wait_s, deadline)) if wait_s > 0 else Action.RETRY_NOW
            timeout = self.timeout if deadline is None else min(self.timeout, deadline - clock.monotonic())
            if action is Action.RETRY_NOW:
                if timeout <= 0:
                    return None  # a flush's deadline bounds the request too
                result, error = yield from self._attempt(items, part, timeout, aborted)
                decision = decide(result, part, batch)
                self._act(decision, result, error, settlement, part)
                action = decision.action
                if action is Action.BACKOFF:
                    action = yield from self._wait(decision.wait_s, deadline)
            if action is Action.ABORTED:
                self._drop_for_shutdown(settlement, part)
            if action not in (Action.RETRY_NOW, Action.PAUSE):
                return action

    def _attempt(
        self, items: list[bytes], part: Part, timeout: float, aborted: Callable[[], bool]
    ) -> Generator[Step, Reply, tuple[Attempt, Optional[APIError]]]:
        """One request for ``items``: what it came to, and the server's refusal, if it was one."""
        budget = part.budget
        headers = self._headers
        if budget.attempts:
            headers = {**headers, "X-Retry-Count": str(budget.attempts)}
        body = self._body(items)
        budget.attempts += 1
        response = yield Post(body, headers, timeout)
        if isinstance(response, TransportError):
            self._answered_last = False
            now = self.clock.monotonic()
            if isinstance(response, Aborted) or aborted():
                return Attempt(now, failure=Failure.ABORTED), None
            failure = next((f for kind, f in _FAILURES if isinstance(response, kind)), Failure.OTHER)
            return Attempt(now, failure=failure, error=self.ledger.redact(str(response))), None
        if isinstance(response, OAuthError):  # raised by an OAuth transport before any request went out
            refusal = self._oauth_refusal(response)
            cause = f"{refusal.status} {refusal.message} from {self.server}"
            return Attempt(self.clock.monotonic(), refusal.status, error=cause), refusal
        if not isinstance(response, TransportResponse):  # pragma: no cover - a driver's bug
            raise TypeError(f"a Post step was answered with {type(response).__name__}")
        self._answered_last = True
        status = response.status
        if 200 <= status < 300:
            return Attempt(self.clock.monotonic(), status), None
        error = self._api_error(status, response.body, response.headers.get("Location"))
        retry_after = parse_retry_after(response.headers.get("Retry-After"), self.clock.time)
        cause = f"{status} {error.message} from {self.server}"
        return Attempt(self.clock.monotonic(), status, error=cause, retry_after_s=retry_after), error

    def _act(
        self,
        decision: Decision,
        result: Attempt,
        error: Optional[APIError],
        settlement: Settlement,
        part: Part,
    ) -> None:
        """Carry out ``decision``'s side effects: settle the part, count, log, pause the pipeline."""
        action, budget = decision.action, part.budget
        if action is Action.DELIVERED:
            settlement.delivered(part.start, part.stop)
            self.health.succeeded()
        elif action is Action.REJECT:
            refusal: SegmentLiteError
            if error is None:  # the server closed the connection on this message alone, each time
                refusal = ConnectionClosed(
                    f"{result.error}, each time this message was sent, while the server answered the rest "
                    "of its batch: dropped as refused"
                )
            else:
                refusal = error
                if error.status not in _MESSAGE_STATUSES:
                    self.health.failed(result.error)  # a refusal of the client (key, path): an outage
            self.health.rejected(str(refusal))
            settlement.drop("rejected", refusal, part.start, part.stop, status=result.status)
        elif action is Action.SPLIT:
            why = result.error if result.status else f"{result.error}, twice"  # 413, 400, or closes
            self.log.info("%s for %d messages; splitting the batch in halves", why, len(part))
        elif action is Action.RETRY_NOW:
            self.ledger.count("retried")
            self.log.debug("kept-alive connection was closed by the server; retrying at once")
        elif action in (Action.BACKOFF, Action.PAUSE, Action.EXHAUSTED):
            self.health.failed(budget.last_error)
            self.ledger.count("retried")
            if action is Action.EXHAUSTED:
                exhausted = RetriesExhaustedError(
                    budget.attempts, budget.last_error, decision.failing_s, budget.last_status
                )
                settlement.drop("retries_exhausted", exhausted, part.start, part.stop)
            elif action is Action.PAUSE:
                self.log.warning(
                    "%s with Retry-After %.1fs; pausing uploads", budget.last_error, decision.wait_s
                )
                self.pause.extend(result.now + decision.wait_s)
            else:
                self.log.debug(
                    "attempt %d failed (%s); retrying in %.3fs",
                    budget.attempts,
                    budget.last_error,
                    decision.wait_s,
                )

    def _api_error(self, status: int, body: bytes, location: Optional[str] = None) -> APIError:
        if 300 <= status < 400:
            return APIError(
                status,
                "redirect",
                f"the server redirected to {location or '(no Location)'}; set host to the final URL "
                "(redirects are not followed, so a batch is never silently re-sent as a GET)",
                host=self.server,
            )
        code, message = api_error_fields(body, body.decode("utf-8", "replace")[:500])
        return APIError(status, code, self.ledger.redact(message), host=self.server)

    def _oauth_refusal(self, exc: OAuthError) -> APIError:
        """The batch's refusal when no OAuth token can be had: a 401, as the API refuses a bad key."""
        return APIError(_OAUTH_REFUSAL_STATUS, exc.code, self.ledger.redact(exc.message), host=self.server)
