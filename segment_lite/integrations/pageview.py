"""The pageview tracker every web adapter shares; re-exports its request parsing and options."""

from __future__ import annotations

import functools
import importlib
import logging
import re
import threading
import uuid
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from re import Pattern
from typing import Any, Callable, Optional, Protocol, Union, cast

from segment_lite.integrations import _request
from segment_lite.integrations._config import (
    DEFAULT_BOT_USER_AGENTS,
    DEFAULT_CONTENT_TYPES,
    DEFAULT_EXCLUDE_PATHS,
    DEFAULT_HEALTH_PATHS,
    DEFAULT_STATIC_EXTENSIONS,
    PageviewConfig,
)
from segment_lite.integrations._request import (
    RequestInfo,
    all_headers,
    build_page_call,
    client_ip,
    decode_ajs_cookie,
    first_header,
    parse_cookie_header,
    response_sets_cookie,
)
from segment_lite.scope import ContextValues, RequestContext, consent_preferences

__all__ = [
    "DEFAULT_BOT_USER_AGENTS",
    "DEFAULT_CONTENT_TYPES",
    "DEFAULT_EXCLUDE_PATHS",
    "DEFAULT_HEALTH_PATHS",
    "DEFAULT_STATIC_EXTENSIONS",
    "PageClient",
    "PageviewConfig",
    "PageviewTracker",
    "RequestInfo",
    "Visit",
    "all_headers",
    "anonymous_id_cookie_header",
    "build_page_call",
    "client_ip",
    "decode_ajs_cookie",
    "first_header",
    "parse_cookie_header",
    "response_sets_cookie",
]

logger = logging.getLogger("segment_lite.integrations")


class PageClient(Protocol):
    """What the integrations need from a client: ``segment_lite.Client`` or the module itself."""

    def page(
        self,
        user_id: Any = ...,
        category: Any = ...,
        name: Any = ...,
        properties: Any = ...,
        context: Any = ...,
        timestamp: Any = ...,
        anonymous_id: Any = ...,
        integrations: Any = ...,
        message_id: Any = ...,
    ) -> Any:
        """Enqueue a page call."""
        ...


@dataclass
class Visit:
    """One request in flight: its description, the visitor's ids and any early skip reason."""

    info: RequestInfo
    anonymous_id: str
    anonymous_id_is_new: bool
    skip_reason: Optional[str] = None
    done: bool = False
    #: The page call's arguments as :meth:`PageviewTracker.request_context` built them (reused).
    page_call: Optional[dict[str, Any]] = None


class _Counter:
    """A thread-safe integer counter."""

    __slots__ = ("_lock", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self) -> None:
        with self._lock:
            self.value += 1


def anonymous_id_cookie_header(anonymous_id: str, config: PageviewConfig) -> str:
    """Return the ``Set-Cookie`` header value that stores ``anonymous_id`` per ``config``."""
    parts = [
        f"{config.anonymous_id_cookie}={anonymous_id}",
        f"Path={config.cookie_path}",
        f"Max-Age={int(config.cookie_max_age)}",
    ]
    if config.cookie_domain:
        parts.append(f"Domain={config.cookie_domain}")
    if config.cookie_samesite:
        parts.append(f"SameSite={config.cookie_samesite}")
    if config.cookie_secure:
        parts.append("Secure")
    return "; ".join(parts)


class PageviewTracker:
    """Decides which requests are pageviews and sends them; shared by every adapter.

    Adapters call :meth:`begin` when a request arrives, then :meth:`finish` (or
    :meth:`should_track` and :meth:`send_page`) once the response status and content type are
    known, adding the returned ``Set-Cookie`` value to the response. None of these raise:
    any error is logged on the ``segment_lite.integrations`` logger and counted in
    :attr:`errors`.
    """

    def __init__(self, config: Optional[PageviewConfig] = None, client: Optional[PageClient] = None) -> None:
        self.config = config or PageviewConfig()
        self.client = client
        cfg = self.config
        self._trusted = _request.parse_networks(cfg.trusted_proxies)
        self._methods = frozenset(cfg.methods)
        self._content_types = frozenset(t.lower() for t in cfg.content_types)
        self._exclude_prefixes = tuple(cfg.exclude_paths)
        self._exclude_patterns: tuple[Pattern[str], ...] = tuple(
            p if isinstance(p, re.Pattern) else re.compile(p) for p in cfg.exclude_patterns
        )
        self._static_extensions = tuple(e.lower() for e in cfg.static_extensions)
        self._health = frozenset(p.rstrip("/") or "/" for p in cfg.health_paths)
        self._is_bot: Optional[Callable[[str], bool]] = None
        if cfg.bot_user_agents is not None:
            self._is_bot = functools.lru_cache(maxsize=4096)(_bot_matcher(cfg.bot_user_agents))
        self._peer_is_trusted = functools.lru_cache(maxsize=1024)(self._check_peer)
        self._tracked = _Counter()
        self._skipped = _Counter()
        self._errors = _Counter()
        self._dropped = _Counter()
        if cfg.debug:
            _enable_debug_logging()

    @classmethod
    def for_adapter(
        cls,
        tracker: Optional[PageviewTracker],
        config: Optional[PageviewConfig],
        client: Optional[PageClient],
        options: dict[str, Any],
    ) -> PageviewTracker:
        """The tracker an adapter uses: ``tracker``, or one built from ``config`` plus ``options``."""
        if tracker is not None:
            return tracker
        base = config or PageviewConfig()
        return cls(base.replace(**options) if options else base, client)

    def _check_peer(self, remote_addr: str) -> bool:
        peer = _request.parse_ip(remote_addr)
        return peer is not None and _request.is_trusted(peer, self._trusted)

    # -- counters

    @property
    def errors(self) -> int:
        """How many times tracking failed inside the integration (never seen by the app)."""
        return self._errors.value

    @property
    def tracked(self) -> int:
        """How many page calls were handed to the client."""
        return self._tracked.value

    @property
    def skipped(self) -> int:
        """How many responses were not tracked."""
        return self._skipped.value

    @property
    def dropped(self) -> int:
        """How many page calls the client refused (e.g. its queue was full)."""
        return self._dropped.value

    def stats(self) -> dict[str, int]:
        """Counters as a dict: tracked, skipped, errors, dropped."""
        return {
            "tracked": self.tracked,
            "skipped": self.skipped,
            "errors": self.errors,
            "dropped": self.dropped,
        }

    def record_error(self, exc: BaseException, where: str = "pageview tracking") -> None:
        """Log and count an error that an adapter caught in its own glue code."""
        self._errors.add()
        logger.error("segment_lite: %s failed", where, exc_info=(type(exc), exc, exc.__traceback__))

    # -- client

    def resolve_client(self) -> PageClient:
        """The configured client, or the ``segment_lite`` module (looked up at call time)."""
        if self.client is not None:
            return self.client
        return cast(PageClient, importlib.import_module("segment_lite"))

    # -- decisions

    def request_skip_reason(self, info: RequestInfo) -> Optional[str]:
        """Why this request will not be tracked whatever the response, or None."""
        if info.method.upper() not in self._methods:
            return "method"
        path = info.path
        if self._exclude_prefixes and path.startswith(self._exclude_prefixes):
            return "excluded_path"
        for pattern in self._exclude_patterns:
            if pattern.search(path):
                return "excluded_path"
        if (path.rstrip("/") or "/") in self._health:
            return "health_check"
        if self._static_extensions and path.lower().endswith(self._static_extensions):
            return "static"
        if self._is_bot is not None and self._is_bot(info.header("user-agent") or ""):
            return "bot"
        if self.config.navigation_only and _not_navigation(info) is not None:
            return "not_navigation"
        return None

    def response_skip_reason(self, visit: Visit, status: int, content_type: Optional[str]) -> Optional[str]:
        """Why this response is not a pageview, or None when it is one."""
        if visit.skip_reason is not None:
            return visit.skip_reason
        cfg = self.config
        if not cfg.min_status <= status <= cfg.max_status:
            return "status"
        if _request.media_type(content_type) not in self._content_types:
            return "content_type"
        if cfg.should_track is not None and not cfg.should_track(visit.info, status, content_type):
            return "should_track"
        return None

    # -- lifecycle

    def begin(self, info: RequestInfo) -> Visit:
        """Start a request: find or mint the anonymous id and apply the request-only filters."""
        try:
            raw = info.cookies.get(self.config.anonymous_id_cookie)
            anonymous_id = decode_ajs_cookie(raw)
            is_new = anonymous_id is None
            if anonymous_id is None:
                anonymous_id = str(uuid.uuid4())
            return Visit(info, anonymous_id, is_new, self.request_skip_reason(info))
        except Exception as exc:
            self.record_error(exc, "pageview request inspection")
            return Visit(info, str(uuid.uuid4()), False, "error")

    def should_track(self, visit: Visit, status: int, content_type: Optional[str]) -> bool:
        """Whether to track this response. Skipped responses are counted here."""
        if visit.done:
            return False
        try:
            reason = self.response_skip_reason(visit, status, content_type)
        except Exception as exc:
            visit.done = True
            self.record_error(exc, "pageview filter")
            return False
        if reason is not None:
            visit.done = True
            if reason != "error":
                self._skipped.add()
                if logger.isEnabledFor(logging.DEBUG):
                    info = visit.info
                    detail = self.describe_skip(reason, info, status, content_type)
                    logger.debug("pageview skipped: %s %r: %s", info.method, info.path, detail)
            return False
        return True

    def describe_skip(self, reason: str, info: RequestInfo, status: int, content_type: Optional[str]) -> str:
        """Say, for a person, why a request with skip ``reason`` was not tracked and which option rules it."""
        cfg = self.config
        if reason == "method":
            return f"method {info.method} is not in methods {cfg.methods!r}"
        if reason == "excluded_path":
            return "the path is excluded (exclude_paths / exclude_patterns)"
        if reason == "health_check":
            return "the path is a health check (health_paths)"
        if reason == "static":
            return "the path ends in a static file extension (static_extensions)"
        if reason == "bot":
            user_agent = info.header("user-agent") or ""
            if not user_agent.strip():
                return "no User-Agent: counted as a bot (bot_user_agents=None tracks it)"
            return (
                f"User-Agent {user_agent!r} counts as a bot (bot_user_agents=None tracks it; "
                "browsers are tracked, curl and HTTP libraries are not)"
            )
        if reason == "not_navigation":
            return f"{_not_navigation(info)}, not a page navigation (navigation_only=False tracks it)"
        if reason == "status":
            return f"status {status} is outside {cfg.min_status}..{cfg.max_status} (min_status / max_status)"
        if reason == "content_type":
            return f"content type {content_type!r} is not a page (content_types)"
        if reason == "should_track":
            return "should_track returned False"
        return reason

    def send_page(
        self,
        visit: Visit,
        *,
        user_id: Optional[str] = None,
        response_sets_anonymous_id: bool = False,
    ) -> Optional[str]:
        """Send the page call; return a ``Set-Cookie`` value to add to the response, or None.

        ``user_id`` is the adapter's own idea of the logged-in user; the ``user_id`` option
        wins over it and it wins over the cookie. Call only after :meth:`should_track`.
        """
        if visit.done:
            return None
        visit.done = True
        try:
            kwargs = self.page_kwargs(visit, user_id=user_id)
            result = self.resolve_client().page(**kwargs)
        except Exception as exc:
            self.record_error(exc)
            return None
        self._tracked.add()
        if isinstance(result, tuple) and result and result[0] is False:
            self._dropped.add()
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("pageview tracked: %s %r", visit.info.method, visit.info.path)
        cfg = self.config
        if visit.anonymous_id_is_new and cfg.set_anonymous_id_cookie and not response_sets_anonymous_id:
            return anonymous_id_cookie_header(visit.anonymous_id, cfg)
        return None

    def finish(
        self,
        visit: Visit,
        status: int,
        content_type: Optional[str],
        *,
        user_id: Optional[str] = None,
        response_sets_anonymous_id: bool = False,
    ) -> Optional[str]:
        """:meth:`should_track` then :meth:`send_page`; returns the ``Set-Cookie`` value or None."""
        if not self.should_track(visit, status, content_type):
            return None
        return self.send_page(visit, user_id=user_id, response_sets_anonymous_id=response_sets_anonymous_id)

    def track(
        self,
        visit: Visit,
        *,
        user_id: Optional[str] = None,
        response_sets_anonymous_id: bool = False,
    ) -> Optional[str]:
        """Deprecated name of :meth:`send_page` (it sends a page call, not a track call)."""
        warnings.warn(
            "PageviewTracker.track() is deprecated; call send_page(), which it sends",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.send_page(visit, user_id=user_id, response_sets_anonymous_id=response_sets_anonymous_id)

    def flush_client(self, timeout_s: Optional[float]) -> Optional[bool]:
        """Flush the client pageviews go to; None when there is nothing to flush.

        With the default ``client=None`` that is the ``segment_lite`` module's default
        client, only if one was created (nothing was tracked through it otherwise).
        Returns what the client's ``flush(timeout)`` returned.
        """
        client: Any = self.client
        if client is None:
            client = getattr(importlib.import_module("segment_lite"), "default_client", None)
        flush = getattr(client, "flush", None)
        if flush is None:
            return None
        return bool(flush(timeout_s))

    def _origin(self, info: RequestInfo) -> tuple[Optional[str], Optional[str], Optional[str]]:
        """The client's IP, scheme and host, believing forwarding headers of trusted proxies only."""
        scheme: Optional[str] = None
        host: Optional[str] = None
        ip = info.remote_addr
        if self._trusted and info.remote_addr:
            if self._peer_is_trusted(info.remote_addr):
                ip = client_ip(info.remote_addr, info.header("x-forwarded-for"), self._trusted)
                scheme = _request.last_forwarded_value(info.header("x-forwarded-proto"))
                host = _request.last_forwarded_value(info.header("x-forwarded-host"))
        return ip, scheme, host

    def _user(self, info: RequestInfo, user_id: Optional[str]) -> Optional[str]:
        """The ``user_id`` option's answer, else the adapter's ``user_id``, else the cookie's."""
        cfg = self.config
        resolved_user = cfg.user_id(info) if cfg.user_id is not None else None
        if resolved_user is None:
            resolved_user = user_id
        if resolved_user is None and cfg.user_id_from_cookie:
            resolved_user = decode_ajs_cookie(info.cookies.get(cfg.user_id_cookie))
        return None if resolved_user is None else str(resolved_user)

    def request_context(self, visit: Visit, *, user_id: Optional[str] = None) -> Optional[RequestContext]:
        """The ``segment_lite.context`` to hold while the app handles ``visit``'s request.

        None when the ``request_context`` option is off or the request could not be
        read (the error is counted in :attr:`errors`). It carries the request's
        ``anonymousId`` and the ``context`` the page call sends (ip, userAgent, page,
        campaign, locale), the consent preferences, and with ``context_user_id`` the
        user (``user_id`` being the adapter's authenticated user, if any).
        """
        cfg = self.config
        if not cfg.request_context:
            return None
        try:
            info = visit.info
            ip, scheme, host = self._origin(info)
            call = build_page_call(
                info,
                anonymous_id=visit.anonymous_id,
                title=cfg.title(info) if cfg.title is not None else None,
                ip=ip if cfg.capture_ip else None,
                scheme=scheme,
                host=host,
            )
            visit.page_call = call
            request_context: dict[str, Any] = dict(call["context"])
            if cfg.consent is not None:
                consent = cfg.consent(info)
                if consent is not None:
                    preferences = consent_preferences(consent, "consent")
                    request_context["consent"] = {"categoryPreferences": preferences}
            # Built here from checked parts, so the checks of segment_lite.context() are skipped.
            values = ContextValues(
                user_id=self._user(info, user_id) if cfg.context_user_id else None,
                anonymous_id=visit.anonymous_id,
                context=request_context,
            )
            return RequestContext(values, fresh=False)
        except Exception as exc:
            self.record_error(exc, "request context")
            return None

    def page_kwargs(self, visit: Visit, *, user_id: Optional[str] = None) -> dict[str, Any]:
        """The keyword arguments of the page call for ``visit`` (may raise on bad callables)."""
        info = visit.info
        cfg = self.config
        built = visit.page_call
        if built is not None:  # the request context built it from the same request: reuse it
            kwargs = {
                "anonymous_id": built["anonymous_id"],
                "user_id": self._user(info, user_id),
                "properties": dict(built["properties"]),
                "context": dict(built["context"]),
            }
        else:
            ip, scheme, host = self._origin(info)
            title = cfg.title(info) if cfg.title is not None else None
            kwargs = build_page_call(
                info,
                anonymous_id=visit.anonymous_id,
                user_id=self._user(info, user_id),
                title=title,
                ip=ip if cfg.capture_ip else None,
                scheme=scheme,
                host=host,
            )
        if cfg.name is not None:
            kwargs["name"] = cfg.name(info)
        if cfg.category is not None:
            kwargs["category"] = cfg.category(info)
        if cfg.properties is not None:
            kwargs["properties"].update(cfg.properties(info) or {})
        if cfg.context is not None:
            kwargs["context"].update(cfg.context(info) or {})
        if cfg.integrations is not None:
            kwargs["integrations"] = dict(cfg.integrations)
        if cfg.consent is not None and "consent" not in kwargs["context"]:
            preferences = cfg.consent(info)
            if preferences is not None:
                kwargs["context"]["consent"] = {"categoryPreferences": dict(preferences)}
        return kwargs


def _bot_matcher(spec: Union[str, Pattern[str], Collection[str]]) -> Callable[[str], bool]:
    if isinstance(spec, str):
        spec = re.compile(spec, re.IGNORECASE)
    if isinstance(spec, re.Pattern):
        pattern = spec

        def matches_pattern(user_agent: str) -> bool:
            return not user_agent.strip() or pattern.search(user_agent) is not None

        return matches_pattern
    fragments = tuple(fragment.lower() for fragment in spec)

    def matches_fragment(user_agent: str) -> bool:
        lowered = user_agent.lower()
        if not lowered.strip():
            return True
        return any(fragment in lowered for fragment in fragments)

    return matches_fragment


def _enable_debug_logging() -> None:
    """Make the integrations' DEBUG lines visible, as the client's ``debug`` does for its own."""
    logger.setLevel(logging.DEBUG)
    if not logger.hasHandlers():
        logger.addHandler(logging.StreamHandler())


def _not_navigation(info: RequestInfo) -> Optional[str]:
    """Which header marks the request as not a page navigation, or None when it is one."""
    mode = info.header("sec-fetch-mode")
    if mode and mode.lower() != "navigate":
        return f"Sec-Fetch-Mode {mode!r}"
    requested_with = info.header("x-requested-with")
    if requested_with and requested_with.lower() == "xmlhttprequest":
        return "X-Requested-With 'XMLHttpRequest'"
    purpose = info.header("sec-purpose") or info.header("purpose") or info.header("x-purpose")
    if purpose and ("prefetch" in purpose.lower() or "preview" in purpose.lower()):
        return f"a prefetch or preview (Purpose {purpose!r})"
    return None
