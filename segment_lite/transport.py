"""HTTP behind a small interface: post bytes, get a status back, or a classified network error."""

from __future__ import annotations

import http.client
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

import requests
import requests.auth

from segment_lite.errors import SegmentLiteError, ValidationError

__all__ = [
    "DEFAULT_HOST",
    "EU_HOST",
    "RequestsTransport",
    "Transport",
    "TransportError",
    "TransportFactory",
    "TransportResponse",
    "batch_url",
]

DEFAULT_HOST = "https://api.segment.io"
EU_HOST = "https://events.eu1.segmentapis.com"
REGION_HOSTS = {"us": DEFAULT_HOST, "eu": EU_HOST}


def batch_url(host: Optional[str], region: Optional[str] = None) -> str:
    """The batch endpoint for ``host`` (any of ``https://h``, ``https://h/``, ``https://h/v1``).

    With no host, ``region`` ("us" or "eu") picks Segment's endpoint.
    """
    if not host:
        key = (region or "us").lower()
        if key not in REGION_HOSTS:
            raise ValidationError(f"region must be 'us' or 'eu', got {region!r}", "region")
        host = REGION_HOSTS[key]
    base = host.strip().rstrip("/")
    if base.endswith("/v1/batch"):
        base = base[: -len("/v1/batch")]
    if base.endswith("/v1"):
        base = base[: -len("/v1")]
    if "://" not in base:
        base = "https://" + base
    return base + "/v1/batch"


@dataclass
class TransportResponse:
    """What came back from the server."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


class TransportError(SegmentLiteError):
    """The request did not get a response (connection refused, reset, timeout, ...).

    ``stale_connection`` is True when a reused keep-alive connection was closed or
    reset by the server: usually one it had closed while idle, so the retry layer
    tries again at once (once per batch); should the server have received the
    batch after all, it deduplicates the retry by messageId.
    """

    def __init__(self, message: str, stale_connection: bool = False) -> None:
        super().__init__(message)
        self.stale_connection = stale_connection


class Transport(Protocol):
    """Posts a request body; one instance is used by one thread at a time."""

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> TransportResponse:
        """Send ``body`` and return the response, or raise ``TransportError``."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


TransportFactory = Callable[[], Transport]

# Exceptions that mean a pooled connection was closed by the peer before or as we
# reused it, as opposed to a server that is down (refused) or slow (timeout).
_STALE_CAUSES = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
    ConnectionAbortedError,
)


def _is_stale(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception nested in it, means a pooled connection had died."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, _STALE_CAUSES):
            return True
        pending.extend(arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException))
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return False


class _HeadersCarryAuth(requests.auth.AuthBase):
    """The Authorization header is already set; this only keeps requests from applying
    credentials from ``~/.netrc`` over it (it does so whenever no auth is given)."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


class RequestsTransport:
    """The default transport: a ``requests.Session`` with keep-alive and TLS verification."""

    def __init__(self, proxies: Optional[Mapping[str, str]] = None, verify: bool = True) -> None:
        self._session = requests.Session()
        self._session.auth = _HeadersCarryAuth()
        if proxies:
            self._session.proxies.update(proxies)
        self._session.verify = verify
        self._used = False

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> TransportResponse:
        reused = self._used
        self._used = True
        try:
            # Redirects are not followed: requests would turn the POST of a 301/302 into a
            # GET, and a 200 for that would pass for a delivered batch.
            response = self._session.post(
                url, data=body, headers=dict(headers), timeout=timeout, allow_redirects=False
            )
        except requests.exceptions.Timeout as exc:
            raise TransportError(f"timed out after {timeout}s: {type(exc).__name__}") from None
        except requests.exceptions.RequestException as exc:
            stale = reused and not isinstance(exc, requests.exceptions.ProxyError) and _is_stale(exc)
            raise TransportError(_describe(exc), stale_connection=stale) from None
        return TransportResponse(response.status_code, response.headers, response.content)

    def close(self) -> None:
        self._session.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _describe(exc: BaseException) -> str:
    # requests' messages embed the URL but never credentials (we send auth in a header).
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]
