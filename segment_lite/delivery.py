"""What to do with a part of a batch after each attempt to send it: the delivery rules, without I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional

from segment_lite.retry import Outcome, RetryPolicy, classify

__all__ = ["Action", "Attempt", "BatchProgress", "Decision", "Failure", "Part", "RetryBudget", "decide"]


class Failure(enum.Enum):
    """How an attempt that got no answer failed, as far as the rules care."""

    NONE = "none"  # it got an answer
    OTHER = "other"  # refused, timed out, TLS, a malformed answer, ...
    CLOSED = "closed"  # the server closed or reset the connection without a complete answer
    STALE = "stale"  # ... on a kept-alive connection it had closed while idle
    ABORTED = "aborted"  # shutdown gave up on it


class Action(enum.Enum):
    """What the driver does next with the part."""

    DELIVERED = "delivered"  # settle it as delivered
    REJECT = "reject"  # drop it as rejected: the server refuses these messages
    EXHAUSTED = "exhausted"  # drop it as retries_exhausted
    ABORTED = "aborted"  # shutdown gave up: cut it short
    SPLIT = "split"  # send its two halves instead
    DEFER = "defer"  # put it behind the batch's other parts, to learn whether the server is alive
    RETRY_NOW = "retry_now"  # send it again at once (a stale kept-alive connection)
    BACKOFF = "backoff"  # wait ``wait_s``, then send it again
    PAUSE = "pause"  # the server's Retry-After: pause every sender ``wait_s``, then send it again


@dataclass(frozen=True)
class Decision:
    """An action, with the wait it needs (``BACKOFF``, ``PAUSE``) or the time spent failing."""

    action: Action
    wait_s: float = 0.0
    failing_s: float = 0.0


@dataclass(frozen=True)
class Attempt:
    """What one request came to: an HTTP status, or a failure; ``error`` says it in words.

    ``now`` is the monotonic time it ended; ``retry_after_s`` the answer's Retry-After, parsed.
    """

    now: float
    status: Optional[int] = None
    failure: Failure = Failure.NONE
    error: str = ""
    retry_after_s: Optional[float] = None


@dataclass
class RetryBudget:
    """A part's retries so far: attempts, time since the first failure, Retry-After total, last error."""

    policy: RetryPolicy
    attempts: int = 0  # requests made (X-Retry-Count is this before the next)
    counted: int = 0  # retries that count against max_retries
    first_failure: Optional[float] = None
    rate_limited_s: float = 0.0
    last_error: str = ""
    last_status: Optional[int] = None  # of the latest answer; None when the latest attempt got none

    def __post_init__(self) -> None:
        self._delays = self.policy.delays()

    def backoff(self, now: float) -> Decision:
        """A counted retry: wait the next backoff delay, or give up once the count or the time runs out."""
        policy = self.policy
        if self.first_failure is None:
            self.first_failure = now
        self.counted += 1
        failing_s = now - self.first_failure
        if self.counted > policy.max_retries or failing_s >= policy.max_total_backoff_s:
            return Decision(Action.EXHAUSTED, failing_s=failing_s)
        # Never wait past the time budget: the last attempt comes as it ends.
        return Decision(Action.BACKOFF, min(next(self._delays), policy.max_total_backoff_s - failing_s))

    def rate_limited(self, retry_after_s: float) -> Decision:
        """The server said when to come back: not counted against max_retries, bounded by max_rate_limit_s."""
        self.rate_limited_s += retry_after_s
        if self.rate_limited_s > self.policy.max_rate_limit_s:
            self.last_error += "; Retry-After waits exceeded the budget"
            return Decision(Action.EXHAUSTED)
        return Decision(Action.PAUSE, retry_after_s)


@dataclass
class Part:
    """A contiguous run of a batch's messages, sent as one request, and what its sending has learnt."""

    start: int
    stop: int
    budget: RetryBudget
    closes: int = 0  # connections closed without an answer while sending this part
    deferred: bool = False  # put back behind the other parts once
    stale_retry_used: bool = False

    def __len__(self) -> int:
        return self.stop - self.start

    def halves(self) -> tuple[Part, Part]:
        middle = self.start + len(self) // 2
        policy = self.budget.policy
        return Part(self.start, middle, RetryBudget(policy)), Part(middle, self.stop, RetryBudget(policy))


@dataclass
class BatchProgress:
    """What one delivery of a batch has learnt about the server, across its parts.

    A message is dropped for making the server close the connection only on proof
    that the server is alive: it answered another part after the first close.
    """

    alive_before: bool  # the request before this batch was answered
    answers: int = 0  # answers (any status) during this delivery
    answers_at_first_close: Optional[int] = None
    split_on_trust: bool = False  # the one split allowed without proof the server is alive
    others_waiting: bool = False  # another part, not yet deferred, waits behind this one (set by the driver)


def decide(result: Attempt, part: Part, batch: BatchProgress) -> Decision:
    """The next step for ``part`` after ``result``; updates the part's budget and the batch's progress.

    2xx delivers; 413 splits and 400 bisects a part of several messages; other
    refusals reject it; retryable statuses and failures back off (a Retry-After
    pauses instead); a stale kept-alive connection is retried at once, once; two
    closes bisect, reject a lone message, defer or back off (``_after_repeated_close``).
    """
    budget = part.budget
    if result.failure is Failure.ABORTED:
        return Decision(Action.ABORTED)
    budget.last_error, budget.last_status = result.error, result.status
    if result.status is not None:
        batch.answers += 1
        outcome = classify(result.status)
        if outcome is Outcome.DELIVERED:
            return Decision(Action.DELIVERED)
        if result.status in (400, 413) and len(part) > 1:
            return Decision(Action.SPLIT)
        if outcome is not Outcome.RETRY:
            return Decision(Action.REJECT)
        if result.retry_after_s:
            return budget.rate_limited(result.retry_after_s)
    elif result.failure in (Failure.CLOSED, Failure.STALE):
        part.closes += 1
        if batch.answers_at_first_close is None:
            batch.answers_at_first_close = batch.answers
        if result.failure is Failure.STALE and not part.stale_retry_used:
            # Almost always closed while idle, before our request; the server
            # deduplicates by messageId if it did get it.
            part.stale_retry_used = True
            return Decision(Action.RETRY_NOW)
        if part.closes >= 2:
            decision = _after_repeated_close(part, batch)
            if decision is not None:
                return decision
    return budget.backoff(result.now)


def _after_repeated_close(part: Part, batch: BatchProgress) -> Optional[Decision]:
    """A part made the server close the connection twice: bisect, reject, defer, or None to back off.

    Until the server proves alive, closes may be the network's doing: a part is
    split at most once on trust, put behind the others to learn more, or retried.
    """
    first = batch.answers_at_first_close
    alive = first is not None and batch.answers > first
    if len(part) > 1:
        trusted = batch.alive_before and not batch.split_on_trust
        if alive or trusted:
            batch.split_on_trust = batch.split_on_trust or not alive
            return Decision(Action.SPLIT)
    elif alive:
        return Decision(Action.REJECT)
    if batch.others_waiting:
        return Decision(Action.DEFER)
    return None
