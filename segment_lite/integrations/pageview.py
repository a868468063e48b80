"""Framework-free server-side pageview logic shared by every web integration."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import ipaddress
import json
import logging
import re
import threading
import uuid
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from re import Pattern
from typing import (
    Any,
    Callable,
    Optional,
    Protocol,
    Union,
    cast,
)
from urllib.parse import parse_qsl, unquote

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
    "header_items_to_dict",
    "parse_cookie_header",
    "response_sets_cookie",
]

logger = logging.getLogger("segment_lite.integrations")

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

_UTM_TO_CAMPAIGN = {
    "utm_source": "source",
    "utm_medium": "medium",
    "utm_campaign": "name",
    "utm_term": "term",
    "utm_content": "content",
}

RequestCallable = Callable[["RequestInfo"], Any]
ShouldTrack = Callable[["RequestInfo", int, Optional[str]], bool]
IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


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
class RequestInfo:
    """A neutral description of one incoming HTTP request, built by each framework adapter.

    ``path`` is the percent-encoded path as it appeared on the wire, without the query;
    ``query_string`` is the raw query without its leading ``?``. ``headers`` must answer
    lookups by lower-case name (a plain dict with lower-case keys, or a case-insensitive
    mapping such as Django's ``request.headers``). ``request`` carries the framework's own
    object (Django/Flask request, WSGI environ or ASGI scope) for user callables.
    """

    method: str
    scheme: str
    host: str
    path: str
    query_string: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    cookies: Mapping[str, str] = field(default_factory=dict)
    remote_addr: Optional[str] = None
    request: Any = None

    def header(self, name: str) -> Optional[str]:
        """Return a header value by lower-case name, or None."""
        return self.headers.get(name)


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

        Unknown keys raise ``ValueError`` so a typo in settings is caught at startup.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in options.items():
            lowered = key.lower()
            if lowered not in names:
                raise ValueError(f"unknown segment_lite pageview option: {key!r}")
            kwargs[lowered] = value
        return cls(**kwargs)

    def replace(self, **changes: Any) -> PageviewConfig:
        """Return a copy with some options changed."""
        return dataclasses.replace(self, **changes)


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


# --------------------------------------------------------------------------- helpers


def parse_cookie_header(header: Optional[str]) -> dict[str, str]:
    """Parse a ``Cookie`` request header into a dict; the first occurrence of a name wins.

    Values are kept as sent, except that one pair of surrounding double quotes is removed.
    Malformed pairs are ignored rather than failing the whole header.
    """
    cookies: dict[str, str] = {}
    if not header:
        return cookies
    for chunk in header.split(";"):
        name, sep, value = chunk.partition("=")
        if not sep:
            continue
        name = name.strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if name and name not in cookies:
            cookies[name] = value
    return cookies


def decode_ajs_cookie(value: Optional[str]) -> Optional[str]:
    """Decode an analytics.js id cookie: raw (2.x) or JSON-quoted and URL-encoded (1.x).

    ``abc-123``, ``%22abc-123%22`` and ``"abc-123"`` all give ``abc-123``; a JSON number
    gives its text. Empty values and ``null``/``undefined`` give None.
    """
    if value is None:
        return None
    text = unquote(value.strip()) if "%" in value else value.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        try:
            decoded = json.loads(text)
        except ValueError:
            decoded = text[1:-1]
        text = decoded if isinstance(decoded, str) else str(decoded)
    text = text.strip()
    if not text or text in ("null", "undefined"):
        return None
    return text


@functools.lru_cache(maxsize=4096)
def _parse_ip(text: str) -> Optional[IPAddress]:
    """Parse an address that may carry a port or brackets (``1.2.3.4:80``, ``[::1]:80``)."""
    candidate = text.strip().strip('"')
    if candidate.startswith("["):
        candidate = candidate[1:].partition("]")[0]
    elif candidate.count(":") == 1:
        candidate = candidate.partition(":")[0]
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values)


def _is_trusted(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def client_ip(
    remote_addr: Optional[str],
    forwarded_for: Optional[str],
    trusted_proxies: Sequence[IPNetwork],
) -> Optional[str]:
    """Return the client's IP address.

    ``X-Forwarded-For`` is believed only when the direct peer is a trusted proxy; its hops
    are then walked right to left, skipping trusted proxies, and the first untrusted hop is
    the client. When every hop is trusted the leftmost one is returned; an unparseable hop
    ends the walk at the last good address.
    """
    if not trusted_proxies or not forwarded_for or not remote_addr:
        return remote_addr
    peer = _parse_ip(remote_addr)
    if peer is None or not _is_trusted(peer, trusted_proxies):
        return remote_addr
    current = str(peer)
    for hop in reversed(forwarded_for.split(",")):
        if not hop.strip():
            continue
        address = _parse_ip(hop)
        if address is None:
            return current
        current = str(address)
        if not _is_trusted(address, trusted_proxies):
            return current
    return current


def _last_forwarded_value(value: Optional[str]) -> Optional[str]:
    """The value a trusted proxy appended last to a comma-separated forwarding header."""
    if not value:
        return None
    last = value.split(",")[-1].strip()
    return last or None


def _locale(accept_language: Optional[str]) -> Optional[str]:
    if not accept_language:
        return None
    for part in accept_language.split(","):
        tag = part.split(";", 1)[0].strip()
        if tag and tag != "*":
            return tag
    return None


def _campaign(query_string: str) -> dict[str, str]:
    campaign: dict[str, str] = {}
    if "utm_" not in query_string:
        return campaign
    for key, value in parse_qsl(query_string, keep_blank_values=False):
        lowered = key.lower()
        if not lowered.startswith("utm_") or len(lowered) == 4:
            continue
        target = _UTM_TO_CAMPAIGN.get(lowered, lowered[4:])
        campaign.setdefault(target, value)
    return campaign


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


def response_sets_cookie(set_cookie_values: Iterable[str], name: str) -> bool:
    """True when any of the response's ``Set-Cookie`` values sets cookie ``name``."""
    prefix = name + "="
    return any(value.lstrip().startswith(prefix) for value in set_cookie_values)


def _media_type(content_type: Optional[str]) -> Optional[str]:
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def build_page_call(
    info: RequestInfo,
    *,
    anonymous_id: str,
    user_id: Optional[str] = None,
    title: Optional[str] = None,
    ip: Optional[str] = None,
    scheme: Optional[str] = None,
    host: Optional[str] = None,
) -> dict[str, Any]:
    """Build the keyword arguments of ``client.page(...)`` for one request.

    ``ip``, ``scheme`` and ``host`` override what ``info`` says (after proxy handling).
    """
    scheme = scheme or info.scheme
    host = host or info.host
    search = f"?{info.query_string}" if info.query_string else ""
    url = f"{scheme}://{host}{info.path}{search}"
    referrer = info.header("referer") or ""
    page: dict[str, Any] = {"path": info.path, "referrer": referrer, "search": search, "url": url}
    if title is not None:
        page["title"] = title
    properties: dict[str, Any] = {"host": host, **page}
    context: dict[str, Any] = {"page": dict(page)}
    if ip:
        context["ip"] = ip
    user_agent = info.header("user-agent")
    if user_agent:
        context["userAgent"] = user_agent
    locale = _locale(info.header("accept-language"))
    if locale:
        context["locale"] = locale
    campaign = _campaign(info.query_string)
    if campaign:
        context["campaign"] = campaign
    return {
        "anonymous_id": anonymous_id,
        "user_id": user_id,
        "properties": properties,
        "context": context,
    }


# --------------------------------------------------------------------------- tracker


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
        self._trusted = _parse_networks(cfg.trusted_proxies)
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
        peer = _parse_ip(remote_addr)
        return peer is not None and _is_trusted(peer, self._trusted)

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
        if self.config.navigation_only and not _is_navigation(info):
            return "not_navigation"
        return None

    def response_skip_reason(self, visit: Visit, status: int, content_type: Optional[str]) -> Optional[str]:
        """Why this response is not a pageview, or None when it is one."""
        if visit.skip_reason is not None:
            return visit.skip_reason
        cfg = self.config
        if not cfg.min_status <= status <= cfg.max_status:
            return "status"
        if _media_type(content_type) not in self._content_types:
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
            return f"{_not_navigation_detail(info)}, not a page navigation (navigation_only=False tracks it)"
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
                scheme = _last_forwarded_value(info.header("x-forwarded-proto"))
                host = _last_forwarded_value(info.header("x-forwarded-host"))
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


def _not_navigation_detail(info: RequestInfo) -> str:
    """Which header marked the request as not a navigation (mirrors :func:`_is_navigation`)."""
    mode = info.header("sec-fetch-mode")
    if mode and mode.lower() != "navigate":
        return f"Sec-Fetch-Mode {mode!r}"
    requested_with = info.header("x-requested-with")
    if requested_with and requested_with.lower() == "xmlhttprequest":
        return "X-Requested-With 'XMLHttpRequest'"
    purpose = info.header("sec-purpose") or info.header("purpose") or info.header("x-purpose")
    return f"a prefetch or preview (Purpose {purpose!r})"


def _is_navigation(info: RequestInfo) -> bool:
    mode = info.header("sec-fetch-mode")
    if mode and mode.lower() != "navigate":
        return False
    requested_with = info.header("x-requested-with")
    if requested_with and requested_with.lower() == "xmlhttprequest":
        return False
    purpose = info.header("sec-purpose") or info.header("purpose") or info.header("x-purpose")
    return not (purpose and ("prefetch" in purpose.lower() or "preview" in purpose.lower()))


def header_items_to_dict(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-case header names; repeated headers are joined with ``, `` (cookies with ``; ``)."""
    headers: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        if key in headers:
            headers[key] = headers[key] + ("; " if key == "cookie" else ", ") + value
        else:
            headers[key] = value
    return headers


def first_header(headers: Sequence[tuple[str, str]], name: str) -> Optional[str]:
    """The first value of header ``name`` (case-insensitive) in a list of pairs."""
    lowered = name.lower()
    for key, value in headers:
        if key.lower() == lowered:
            return value
    return None


def all_headers(headers: Sequence[tuple[str, str]], name: str) -> list[str]:
    """Every value of header ``name`` (case-insensitive) in a list of pairs."""
    lowered = name.lower()
    return [value for key, value in headers if key.lower() == lowered]
