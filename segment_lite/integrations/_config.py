"""Every option of the pageview integrations, and their defaults."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from re import Pattern
from typing import Any, Callable, Optional, Union

from segment_lite.errors import ValidationError
from segment_lite.integrations._request import RequestInfo

ONE_YEAR_SECONDS = 365 * 24 * 60 * 60

#: Paths skipped by default (prefix match): conventional static and media roots.
DEFAULT_EXCLUDE_PATHS: tuple[str, ...] = ("/static/", "/media/", "/__debug__/")

#: Health and readiness endpoints skipped by default (exact match, trailing slash ignored).
DEFAULT_HEALTH_PATHS: frozenset[str] = frozenset(
    {
        "/health",
        "/healthz",
        "/healthcheck",
        "/health-check",
        "/_health",
        "/ready",
        "/readyz",
        "/readiness",
        "/live",
        "/livez",
        "/liveness",
        "/ping",
        "/-/health",
        "/-/ready",
        "/-/live",
    }
)

#: File extensions treated as static assets and skipped by default (case-insensitive).
DEFAULT_STATIC_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".css",
        ".js",
        ".mjs",
        ".map",
        ".json",
        ".xml",
        ".txt",
        ".webmanifest",
        ".wasm",
        ".ico",
        ".png",
        ".jpg",
        ".jpeg",
        ".gif",
        ".svg",
        ".webp",
        ".avif",
        ".bmp",
        ".tif",
        ".tiff",
        ".woff",
        ".woff2",
        ".ttf",
        ".otf",
        ".eot",
        ".mp3",
        ".mp4",
        ".m4a",
        ".ogg",
        ".wav",
        ".webm",
        ".mov",
        ".pdf",
        ".zip",
        ".gz",
        ".br",
        ".tar",
    }
)

#: Response media types counted as page loads by default.
DEFAULT_CONTENT_TYPES: tuple[str, ...] = ("text/html", "application/xhtml+xml")

#: Case-insensitive fragments of the user agents of crawlers, link unfurlers, uptime
#: monitors, headless browsers and HTTP libraries; requests whose User-Agent contains one
#: are not tracked by default.
DEFAULT_BOT_USER_AGENTS: tuple[str, ...] = (
    "bot",
    "crawl",
    "spider",
    "slurp",
    "archiver",
    "mediapartners",
    "facebookexternalhit",
    "facebookcatalog",
    "embedly",
    "quora link preview",
    "outbrain",
    "pinterest",
    "vkshare",
    "w3c_validator",
    "whatsapp",
    "nuzzel",
    "preview",
    "headless",
    "phantomjs",
    "lighthouse",
    "pagespeed",
    "prerender",
    "uptime",
    "pingdom",
    "statuscake",
    "site24x7",
    "newrelicpinger",
    "datadog",
    "check_http",
    "monitor",
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "python-httpx",
    "aiohttp",
    "go-http-client",
    "okhttp",
    "java/",
    "libwww",
    "apache-httpclient",
    "node-fetch",
    "axios/",
    "scrapy",
    "feedfetcher",
    "feedburner",
)

RequestCallable = Callable[[RequestInfo], Any]
ShouldTrack = Callable[[RequestInfo, int, Optional[str]], bool]


@dataclass(frozen=True)
class PageviewConfig:
    """Every option of the pageview integrations; each adapter accepts one of these.

    Filtering (a request is tracked only when every check passes):

    - ``methods``: request methods tracked. Default ``("GET",)``.
    - ``min_status`` / ``max_status``: inclusive response status range. Default 200..299.
    - ``content_types``: response media types tracked (parameters such as ``charset`` are
      ignored). Default ``("text/html", "application/xhtml+xml")``.
    - ``exclude_paths``: path prefixes never tracked. Default :data:`DEFAULT_EXCLUDE_PATHS`.
    - ``exclude_patterns``: regular expressions (strings or compiled) searched in the path.
    - ``static_extensions``: path suffixes treated as static files. Default
      :data:`DEFAULT_STATIC_EXTENSIONS`.
    - ``health_paths``: exact paths of health checks. Default :data:`DEFAULT_HEALTH_PATHS`.
    - ``bot_user_agents``: which user agents are bots: a collection of case-insensitive
      fragments (any one contained in the User-Agent matches), or a regular expression
      (a string or compiled pattern, searched case-insensitively), or None to track bots
      too. Default :data:`DEFAULT_BOT_USER_AGENTS`. Unless None, an empty or missing
      User-Agent also counts as a bot. Decisions are cached per distinct User-Agent.
    - ``navigation_only``: skip requests a browser marks as not being a page navigation
      (``Sec-Fetch-Mode`` other than ``navigate``, ``X-Requested-With: XMLHttpRequest``,
      ``Sec-Purpose``/``Purpose`` prefetch). Default True.
    - ``should_track``: ``f(request_info, status, content_type) -> bool``, consulted last;
      returning False skips the request.
    - ``debug``: log each request's outcome (tracked, or skipped and why: which rule, the
      User-Agent taken for a bot...) at DEBUG on the ``segment_lite.integrations`` logger,
      which is set to DEBUG and given a stderr handler if logging has none. Default False.

    Message content:

    - ``title`` / ``name`` / ``category``: ``f(request_info) -> str | None`` giving the page
      title (sent as ``properties.title`` and ``context.page.title``), name and category.
    - ``properties`` / ``context``: ``f(request_info) -> dict`` merged over the built
      properties and context.
    - ``integrations``: the ``integrations`` object sent with every page call.
    - ``capture_ip``: send ``context.ip``. Default True.
    - ``trusted_proxies``: IPs or CIDRs of reverse proxies whose ``X-Forwarded-For``,
      ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` headers are believed. Default none.

    Request context (see docs/integrations.md#request-context):

    - ``request_context``: open a ``segment_lite.context`` for each request, so every
      call the app makes while handling it carries the visitor's ``anonymousId`` and
      ``context.ip``, ``userAgent``, ``page``, ``campaign`` and ``locale``, as the page
      call does. Default True.
    - ``context_user_id``: put the logged-in user (the ``user_id`` option, else the
      framework's authenticated user: Django's ``request.user``, Flask-Login's
      ``current_user``, else the ``user_id_cookie``) in that context's ``user_id``.
      Default False (reading the user may cost a session or database lookup).
    - ``consent``: ``f(request_info) -> {category: granted} | None`` reading the
      visitor's consent preferences (e.g. :func:`segment_lite.privacy.onetrust_consent`
      from the ``OptanonConsent`` cookie); stamped on every call of the request,
      the page call included, as ``context.consent.categoryPreferences``.

    Identity:

    - ``user_id``: ``f(request_info) -> str | None`` giving the logged-in user; wins over
      the adapter's own user lookup (Django's ``request.user``) and the cookie.
    - ``user_id_from_cookie``: read ``userId`` from the ``user_id_cookie``. Default True.
    - ``anonymous_id_cookie`` / ``user_id_cookie``: cookie names. Defaults
      ``ajs_anonymous_id`` / ``ajs_user_id`` (those of analytics.js).
    - ``set_anonymous_id_cookie``: set a new ``anonymousId`` cookie on tracked responses
      when the request had none. Default True.
    - ``cookie_domain`` (default None: host-only), ``cookie_path`` (``/``),
      ``cookie_max_age`` (one year, in seconds), ``cookie_samesite`` (``Lax``; None omits
      it), ``cookie_secure`` (False). The cookie is never HttpOnly, so analytics.js in the
      browser can read and keep using the same id.
    """

    methods: tuple[str, ...] = ("GET",)
    min_status: int = 200
    max_status: int = 299
    content_types: tuple[str, ...] = DEFAULT_CONTENT_TYPES
    exclude_paths: tuple[str, ...] = DEFAULT_EXCLUDE_PATHS
    exclude_patterns: tuple[Union[str, Pattern[str]], ...] = ()
    static_extensions: frozenset[str] = DEFAULT_STATIC_EXTENSIONS
    health_paths: frozenset[str] = DEFAULT_HEALTH_PATHS
    bot_user_agents: Optional[Union[str, Pattern[str], Collection[str]]] = DEFAULT_BOT_USER_AGENTS
    navigation_only: bool = True
    should_track: Optional[ShouldTrack] = None
    debug: bool = False
    title: Optional[RequestCallable] = None
    name: Optional[RequestCallable] = None
    category: Optional[RequestCallable] = None
    properties: Optional[RequestCallable] = None
    context: Optional[RequestCallable] = None
    integrations: Optional[Mapping[str, Any]] = None
    capture_ip: bool = True
    trusted_proxies: tuple[str, ...] = ()
    user_id: Optional[RequestCallable] = None
    user_id_from_cookie: bool = True
    anonymous_id_cookie: str = "ajs_anonymous_id"
    user_id_cookie: str = "ajs_user_id"
    set_anonymous_id_cookie: bool = True
    cookie_domain: Optional[str] = None
    cookie_path: str = "/"
    cookie_max_age: int = ONE_YEAR_SECONDS
    cookie_samesite: Optional[str] = "Lax"
    cookie_secure: bool = False
    request_context: bool = True
    context_user_id: bool = False
    consent: Optional[RequestCallable] = None

    def __post_init__(self) -> None:
        # Accept lists (e.g. from settings files) and normalise to the declared immutable types.
        for name in ("methods", "content_types", "exclude_paths", "exclude_patterns", "trusted_proxies"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)):
                raise TypeError(f"PageviewConfig.{name} must be a sequence, not a single string")
            object.__setattr__(self, name, tuple(value))
        for name in ("static_extensions", "health_paths"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)):
                raise TypeError(f"PageviewConfig.{name} must be a collection, not a single string")
            object.__setattr__(self, name, frozenset(value))
        object.__setattr__(self, "methods", tuple(m.upper() for m in self.methods))
        bots = self.bot_user_agents
        if bots is not None and not isinstance(bots, (str, re.Pattern)):
            object.__setattr__(self, "bot_user_agents", tuple(bots))

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> PageviewConfig:
        """Build a config from a settings mapping; keys are field names in any letter case.

        Unknown keys raise ``ValidationError`` (a ``ValueError``) so a typo in settings is caught at startup.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in options.items():
            lowered = key.lower()
            if lowered not in names:
                raise ValidationError(f"unknown segment_lite pageview option: {key!r}", key)
            kwargs[lowered] = value
        return cls(**kwargs)

    def replace(self, **changes: Any) -> PageviewConfig:
        """Return a copy with some options changed."""
        return dataclasses.replace(self, **changes)
