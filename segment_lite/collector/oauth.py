"""The collector's OAuth mode: a token endpoint that checks signed client assertions, and a Bearer check.

With a public key configured, the collector plays Segment's auth server as well
as its Tracking API, so the client's OAuth flow is tested end to end:

* ``POST /token`` takes a client-credentials grant whose ``client_assertion`` is
  a JWT signed (RS256) with the matching private key, and answers an access
  token with its lifetime;
* Tracking API requests must then carry ``Authorization: Bearer <token>``
  with a token it issued that has not expired (requests without a Bearer token
  fall back to the write-key check when write keys are configured).

Needs PyJWT with its crypto backend (the ``[oauth]`` extra), imported only when
OAuth mode is on.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any, Callable, Optional
from urllib.parse import parse_qs

from segment_lite.collector.http_server import Request, Response
from segment_lite.collector.processing import RequestError
from segment_lite.collector.tracking import CredentialCheck, Credentials
from segment_lite.errors import ValidationError

__all__ = ["ASSERTION_TYPE", "DEFAULT_TOKEN_LIFETIME_S", "TOKEN_PATH", "TokenIssuer"]

TOKEN_PATH = "/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEFAULT_TOKEN_LIFETIME_S = 3600
#: Seconds of clock difference tolerated on an assertion's iat/exp.
ASSERTION_LEEWAY_S = 10
MAX_FORM_BYTES = 64 * 1024


def _oauth_error(status: int, error: str, description: str) -> Response:
    # OAuth's own error shape (RFC 6749 section 5.2), which the client reads.
    return Response.json(status, {"error": error, "error_description": description})


class TokenIssuer:
    """Issues access tokens for valid client assertions and checks them on Tracking API requests.

    ``public_key`` is the PEM text of the key that verifies assertions;
    ``audience`` returns the URL assertions must name as ``aud`` (the
    collector's own, known once it is bound); ``fallback`` checks requests that
    carry no Bearer token (None refuses them).
    """

    def __init__(
        self,
        public_key: str,
        audience: Callable[[], str],
        *,
        token_lifetime_s: int = DEFAULT_TOKEN_LIFETIME_S,
        fallback: Optional[CredentialCheck] = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        try:
            import jwt
        except ImportError:
            raise ValidationError(
                "the collector's OAuth mode needs PyJWT: pip install 'segment-lite[oauth]'",
                "oauth_public_key",
            ) from None
        self._jwt: Any = jwt
        try:
            jwt.algorithms.RSAAlgorithm(jwt.algorithms.RSAAlgorithm.SHA256).prepare_key(public_key)
        except Exception as exc:
            raise ValidationError(f"oauth public key is not a usable RSA PEM key: {exc}") from None
        self._public_key = public_key
        self._audience = audience
        self.token_lifetime_s = int(token_lifetime_s)
        self._fallback = fallback
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}  # access token -> expiry (epoch seconds)
        self.issued = 0

    # -- the token endpoint --------------------------------------------------------

    def handle_token(self, request: Request) -> Response:
        """Answer ``POST /token``."""
        try:
            body = request.read_body(keep_bytes=MAX_FORM_BYTES)
        except RequestError as exc:
            return _oauth_error(exc.status, "invalid_request", exc.message)
        if not body.complete:
            return _oauth_error(413, "invalid_request", f"the form is over {MAX_FORM_BYTES} bytes")
        raw = body.data
        try:
            fields = parse_qs(raw.decode("utf-8"))
            form = {key: values[0] for key, values in fields.items()}
        except UnicodeDecodeError:
            return _oauth_error(400, "invalid_request", "the form is not UTF-8")
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "grant_type must be client_credentials")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return _oauth_error(400, "invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
        assertion = form.get("client_assertion")
        if not assertion:
            return _oauth_error(400, "invalid_request", "client_assertion is missing")
        jwt = self._jwt
        try:
            claims = jwt.decode(
                assertion,
                self._public_key,
                algorithms=["RS256"],
                audience=self._audience(),
                leeway=ASSERTION_LEEWAY_S,
                options={"require": ["exp", "iat", "iss", "sub", "aud", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            return _oauth_error(400, "invalid_request", "Token is expired")
        except jwt.ImmatureSignatureError:
            return _oauth_error(400, "invalid_request", "Token used before issued")
        except jwt.InvalidTokenError as exc:
            return _oauth_error(401, "invalid_client", f"client assertion refused: {exc}")
        if claims.get("iss") != claims.get("sub"):
            return _oauth_error(401, "invalid_client", "client assertion: iss and sub must be the client id")
        token = secrets.token_urlsafe(24)
        with self._lock:
            now = self._clock()
            self._tokens = {key: expiry for key, expiry in self._tokens.items() if expiry > now}
            self._tokens[token] = now + self.token_lifetime_s
            self.issued += 1
        answer = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.token_lifetime_s,
            "scope": form.get("scope", ""),
        }
        return Response.json(200, answer)

    def expire_all(self) -> int:
        """Expire every token issued so far (as a server that rotated its keys); returns how many."""
        with self._lock:
            count = len(self._tokens)
            self._tokens.clear()
        return count

    # -- the Bearer check --------------------------------------------------------

    def __call__(self, credentials: Credentials) -> None:
        """A credential check: accept a live issued Bearer token, else defer to the fallback."""
        authorization = credentials.authorization or ""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer":
            with self._lock:
                expiry = self._tokens.get(token.strip())
            if expiry is None or expiry <= self._clock():
                raise RequestError(401, "unauthorized", "unknown or expired access token")
            return
        if self._fallback is not None:
            self._fallback(credentials)
            return
        raise RequestError(
            401, "unauthorized", f"OAuth mode: send Authorization: Bearer <token> (get one from {TOKEN_PATH})"
        )
