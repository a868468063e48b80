"""OAuth for the Tracking API: sign a client assertion, fetch and cache an access token, send it as Bearer.

Segment's OAuth flow (as segment-analytics-python implements it): the client
signs a short-lived JWT with its private key (RS256, ``kid`` = the key id), posts
it to ``{auth_server}/token`` as a client-credentials grant, and sends the access
token it gets back as ``Authorization: Bearer ...`` instead of the write key.

``OAuthTransport`` wraps the batch transport, so the sender and its retry policy
are unchanged: a token that cannot be had for now (the auth server is down)
raises ``TransportError`` and the batch is retried like any network failure; a
token that can never be had (a bad key, a refused client) answers the batch with
a 401 carrying the reason, so the batch is dropped as ``rejected`` and reported
to ``on_error`` with an ``APIError``. Nothing here ever raises into ``track()``.

Needs the ``[oauth]`` extra (PyJWT with its crypto backend); this module imports
it only when a token source is made.
"""

from __future__ import annotations

import email.utils
import json
import logging
import threading
import uuid
import weakref
from collections.abc import Mapping
from typing import Any, Callable, Optional
from urllib.parse import urlencode

import requests

from segment_lite.after_fork import on_fork_in_child
from segment_lite.errors import OAuthError, ValidationError
from segment_lite.ledger import Credentials
from segment_lite.retry import Clock
from segment_lite.transport import Transport, TransportError, TransportResponse

__all__ = [
    "DEFAULT_AUTH_SERVER",
    "DEFAULT_SCOPE",
    "OAuthConfig",
    "OAuthError",
    "OAuthTokenSource",
    "OAuthTransport",
    "require_jwt",
]

DEFAULT_AUTH_SERVER = "https://oauth2.segment.io"
DEFAULT_SCOPE = "tracking_api:write"
#: Attempts per token request for transient failures (5xx, network errors, bad JSON).
TOKEN_ATTEMPTS = 3
#: First delay between those attempts; it doubles after each.
TOKEN_RETRY_DELAY_S = 0.025
#: The longest rate-limit reset honoured from the auth server.
MAX_RATE_LIMIT_RESET_S = 300.0
#: A token is refreshed once half its lifetime has passed.
REFRESH_AT_FRACTION = 0.5
#: Lifetime assumed when the auth server does not say.
DEFAULT_TOKEN_LIFETIME_S = 120.0
#: Statuses of the batch endpoint after which the cached token is not trusted again.
TOKEN_INVALIDATING_STATUSES = frozenset({400, 401, 403, 511})
#: Statuses after which a batch is re-sent once at once with a new token.
RETRY_WITH_NEW_TOKEN_STATUSES = frozenset({401, 403})
_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# The auth server reports clock skew with these descriptions; retry once with a corrected clock.
_SKEW_DESCRIPTIONS = frozenset({"Token is expired", "Token used before issued"})

log = logging.getLogger("segment")  # the client's logger (see client.py)


def require_jwt() -> Any:
    """Import PyJWT, or raise one clear error naming the extra to install."""
    try:
        import jwt
    except ImportError:
        raise ValidationError(
            "OAuth needs PyJWT and its crypto backend: pip install 'segment-lite[oauth]'",
            "oauth_client_key",
        ) from None
    return jwt


class OAuthConfig:
    """The OAuth settings of a client (the private key is never shown in repr)."""

    def __init__(
        self,
        client_id: str,
        client_key: str,
        key_id: str,
        auth_server: str = DEFAULT_AUTH_SERVER,
        scope: str = DEFAULT_SCOPE,
        timeout_s: float = 15.0,
        proxies: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.client_id = client_id
        self.client_key = client_key
        self.key_id = key_id
        self.auth_server = auth_server.rstrip("/")
        self.scope = scope
        self.timeout_s = timeout_s
        self.proxies = dict(proxies) if proxies else None

    @property
    def token_url(self) -> str:
        """Where tokens are requested."""
        return f"{self.auth_server}/token"

    def __repr__(self) -> str:
        return (
            f"OAuthConfig(client_id={self.client_id!r}, key_id={self.key_id!r}, "
            f"auth_server={self.auth_server!r})"
        )


class _Transient(Exception):
    """A token request that may succeed if tried again."""


# Token sources alive in this process: a forked child rebuilds their locks.
_SOURCES: weakref.WeakSet[OAuthTokenSource] = weakref.WeakSet()


class OAuthTokenSource:
    """Fetches access tokens and caches each until half its lifetime has passed.

    One source is shared by every sender of a client; ``authorization()`` is
    thread-safe and makes at most one token request at a time.
    """

    def __init__(
        self,
        config: OAuthConfig,
        clock: Optional[Clock] = None,
        session_factory: Callable[[], requests.Session] = requests.Session,
        *,
        credentials: Optional[Credentials] = None,
    ) -> None:
        self._jwt = require_jwt()
        self.config = config
        # The client's: each assertion and token is masked in its logs and errors from the moment it exists.
        self.credentials = Credentials() if credentials is None else credentials
        self.credentials.add_private_key(config.client_key)
        self.clock = clock or Clock()
        self._session_factory = session_factory
        self._session: Optional[requests.Session] = None
        self._lock = threading.Lock()
        self._token: Optional[str] = None
        self._refresh_at = 0.0  # monotonic seconds
        self._skew_s = 0  # our clock minus the auth server's, from its Date header
        _SOURCES.add(self)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._session = None  # the parent's connections are not ours

    def invalidate(self, authorization: Optional[str] = None) -> None:
        """Forget the cached token (the batch endpoint refused it).

        With ``authorization``, only if that is still the cached token's header:
        another thread may already have replaced it.
        """
        with self._lock:
            if authorization is None or authorization == f"Bearer {self._token}":
                self._token = None

    def authorization(self, interrupt: threading.Event) -> str:
        """The ``Authorization`` header value, fetching a token if none is cached.

        Raises ``OAuthError`` when no token can be had with this configuration,
        ``TransportError`` when the auth server cannot give one now.
        """
        with self._lock:
            if self._token is not None and self.clock.monotonic() < self._refresh_at:
                return f"Bearer {self._token}"
            token, lifetime_s = self._fetch(interrupt)
            self._token = token
            self._refresh_at = self.clock.monotonic() + lifetime_s * REFRESH_AT_FRACTION
            return f"Bearer {token}"

    # -- one token -------------------------------------------------------------

    def _fetch(self, interrupt: threading.Event) -> tuple[str, float]:
        delay = TOKEN_RETRY_DELAY_S
        failures = 0
        skew_retried = False
        last_error = "no attempt"
        while True:
            try:
                return self._request_token(skew_retried)
            except _SkewRetry:
                skew_retried = True
                continue
            except _RateLimited as limited:
                log.warning("OAuth token request rate limited; waiting %.1fs", limited.wait_s)
                if not self.clock.wait(limited.wait_s, interrupt):
                    raise TransportError("OAuth token request interrupted by shutdown") from None
                continue
            except _Transient as exc:
                last_error = self.credentials.redact(str(exc))
                failures += 1
            if failures >= TOKEN_ATTEMPTS:
                raise TransportError(f"OAuth token request failed {failures} times: {last_error}")
            log.debug("OAuth token request failed (%s); retrying in %.3fs", last_error, delay)
            if not self.clock.wait(delay, interrupt):
                raise TransportError("OAuth token request interrupted by shutdown")
            delay *= 2

    def _assertion(self) -> str:
        config = self.config
        now = int(self.clock.time()) - self._skew_s
        claims = {
            "iss": config.client_id,
            "sub": config.client_id,
            "aud": config.auth_server,
            "iat": now - 5,
            "exp": now + 55,
            "jti": str(uuid.uuid4()),
        }
        try:
            signed = self._jwt.encode(
                claims, config.client_key, algorithm="RS256", headers={"kid": config.key_id}
            )
        except Exception as exc:  # a key PyJWT cannot read or sign with: never fixed by retrying
            reason = self.credentials.redact(f"cannot sign the client assertion: {exc}")
            raise OAuthError(0, "invalid_client_key", reason) from None
        assertion = str(signed)
        self.credentials.add_issued(assertion)
        self.credentials.add_issued(assertion.rpartition(".")[2])  # the signature: the part that is secret
        return assertion

    def _request_token(self, skew_retried: bool) -> tuple[str, float]:
        config = self.config
        body = urlencode(
            {
                "grant_type": "client_credentials",
                "client_assertion_type": _ASSERTION_TYPE,
                "client_assertion": self._assertion(),
                "scope": config.scope,
            }
        )
        if self._session is None:
            self._session = self._session_factory()
        try:
            response = self._session.post(
                url=config.token_url,
                data=body,
                timeout=config.timeout_s,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                proxies=config.proxies,
                allow_redirects=False,
            )
        except requests.exceptions.RequestException as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from None
        status = int(response.status_code)
        self._note_server_time(response.headers)
        payload = _json_object(response)
        if status == 200:
            token = payload.get("access_token") if payload is not None else None
            if not isinstance(token, str) or not token:
                raise _Transient("the auth server answered 200 without an access_token")
            self.credentials.add_issued(token)
            return token, _lifetime(payload)
        if status == 429:
            raise _RateLimited(_rate_limit_reset(response.headers))
        error = str(payload.get("error", "unknown")) if payload else "unknown"
        description = str(payload.get("error_description", payload.get("message", ""))) if payload else ""
        if 400 <= status < 500:
            if error == "invalid_request" and description in _SKEW_DESCRIPTIONS and not skew_retried:
                raise _SkewRetry()
            redact = self.credentials.redact
            raise OAuthError(status, redact(error), redact(description or _text(response)))
        raise _Transient(f"HTTP {status} {error}: {description}".strip())

    def _note_server_time(self, headers: Mapping[str, Any]) -> None:
        value = _header(headers, "Date")
        if not value:
            return
        try:
            server = email.utils.parsedate_to_datetime(str(value)).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return
        self._skew_s = int(self.clock.time() - server)


class _SkewRetry(Exception):
    """The auth server found the assertion's times off; retry with its clock."""


class _RateLimited(Exception):
    def __init__(self, wait_s: float) -> None:
        super().__init__(f"rate limited for {wait_s}s")
        self.wait_s = wait_s


def _header(headers: Mapping[str, Any], name: str) -> Any:
    lowered = name.lower()
    for key, value in headers.items():
        if str(key).lower() == lowered:
            return value
    return None


def _rate_limit_reset(headers: Mapping[str, Any]) -> float:
    try:
        seconds = float(_header(headers, "X-RateLimit-Reset"))
    except (TypeError, ValueError):
        return 5.0
    if seconds != seconds or seconds < 0:  # NaN or negative
        return 5.0
    return min(seconds, MAX_RATE_LIMIT_RESET_S)


def _json_object(response: Any) -> Optional[dict[str, Any]]:
    try:
        payload = response.json()
    except Exception:  # not JSON, or a body that cannot be read
        return None
    return payload if isinstance(payload, dict) else None


def _lifetime(payload: Optional[dict[str, Any]]) -> float:
    try:
        lifetime = float(payload.get("expires_in", DEFAULT_TOKEN_LIFETIME_S)) if payload else 0.0
    except (TypeError, ValueError):
        return DEFAULT_TOKEN_LIFETIME_S
    return lifetime if lifetime > 0 and lifetime == lifetime else DEFAULT_TOKEN_LIFETIME_S


def _text(response: Any) -> str:
    text = getattr(response, "text", "")
    return str(text)[:500] if text else ""


class OAuthTransport:
    """A transport that authenticates each batch with an OAuth access token.

    It replaces the ``Authorization`` header of the wrapped transport's requests
    with ``Bearer <token>``. When no token can ever be had, it answers the batch
    itself with a 401 whose body names the reason, so the sender drops the batch
    as ``rejected`` and reports the reason to ``on_error``.
    """

    def __init__(self, inner: Transport, tokens: OAuthTokenSource) -> None:
        self._inner = inner
        self._tokens = tokens
        self._interrupt = threading.Event()

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> TransportResponse:
        """Post ``body`` with a Bearer token instead of the write key."""
        self._interrupt = threading.Event()  # an abort concerns the request in flight only
        try:
            authorization = self._tokens.authorization(self._interrupt)
        except OAuthError as exc:
            reason = json.dumps({"code": exc.code, "message": exc.message}).encode()
            return TransportResponse(401, {"Content-Type": "application/json"}, reason)
        response = self._inner.post(url, body, {**headers, "Authorization": authorization}, timeout)
        if response.status not in TOKEN_INVALIDATING_STATUSES:
            return response
        self._tokens.invalidate(authorization)
        if response.status not in RETRY_WITH_NEW_TOKEN_STATUSES:
            return response
        # The server no longer takes this token (expired early, keys rotated): try once
        # more with a new one rather than drop the batch as the reference client does.
        try:
            renewed = self._tokens.authorization(self._interrupt)
        except (OAuthError, TransportError):
            return response
        if renewed == authorization:
            return response
        response = self._inner.post(url, body, {**headers, "Authorization": renewed}, timeout)
        if response.status in TOKEN_INVALIDATING_STATUSES:
            self._tokens.invalidate(renewed)
        return response

    def abort(self) -> None:
        """Interrupt a wait for the auth server and the wrapped transport's request."""
        self._interrupt.set()
        self._inner.abort()

    def close(self) -> None:
        """Release the wrapped transport's connections."""
        self._inner.close()


def _reset_after_fork() -> None:
    for source in list(_SOURCES):
        source._after_fork_in_child()


on_fork_in_child("oauth", _reset_after_fork)
