"""The Collector's grouped settings: the faults it starts with, how it authenticates, and its limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from segment_lite.collector.faults import FaultBody, RetryAfter
from segment_lite.collector.http_server import ConnectionLimits
from segment_lite.collector.processing import Limits
from segment_lite.collector.tracking import CredentialCheck

__all__ = ["DEFAULT_KEEP_REQUEST_BYTES", "Auth", "CollectorLimits", "Faults"]

#: Bodies kept in ``Collector.requests`` by default, in total.
DEFAULT_KEEP_REQUEST_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Faults:
    """Faults from the outset (``fail_next``, ``delay_next`` and ``reset_next`` queue the same at run time).

    * ``fail_count`` requests answered ``fail_status`` with ``retry_after`` (a
      ``Retry-After`` header) and ``fail_body``;
    * ``fail_rate``: each later request fails the same way with this probability
      (seeded by ``seed`` for repeatable runs);
    * ``delay_s``: answers are delayed by this many seconds, for the first
      ``delay_count`` requests or, with ``delay_count=None``, for all of them;
    * ``reset_count`` requests are read and then answered with a TCP reset.
    """

    fail_status: int = 503
    fail_count: int = 0
    retry_after: RetryAfter = None
    fail_body: FaultBody = None
    fail_rate: float = 0.0
    delay_s: float = 0.0
    delay_count: Optional[int] = None
    reset_count: int = 0
    seed: Optional[int] = None


@dataclass(frozen=True)
class Auth:
    """Authentication beyond ``write_keys``.

    ``credential_check`` replaces the write-key check with another (see
    :class:`~segment_lite.collector.tracking.CredentialCheck`).
    ``oauth_public_key`` (PEM text) turns on OAuth mode: ``POST /token`` issues
    access tokens for client assertions signed with the matching private key,
    valid ``oauth_token_lifetime_s`` seconds, and Tracking API requests must
    carry one as ``Authorization: Bearer`` (or, when write keys are set, a
    write key); see :class:`~segment_lite.collector.oauth.TokenIssuer`.
    """

    credential_check: Optional[CredentialCheck] = None
    oauth_public_key: Optional[str] = field(default=None, repr=False)
    oauth_token_lifetime_s: int = 3600


@dataclass(frozen=True)
class CollectorLimits:
    """What the collector accepts and keeps.

    ``sizes``: Segment's size limits. ``connections``: timeouts and the
    connection bound. ``keep_requests`` bounds how many recorded requests
    ``Collector.requests`` keeps and ``keep_request_bytes`` the body bytes they
    hold (64 MiB by default; the oldest are dropped; None: no bound).
    """

    sizes: Limits = field(default_factory=Limits)
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    keep_requests: Optional[int] = None
    keep_request_bytes: Optional[int] = DEFAULT_KEEP_REQUEST_BYTES
