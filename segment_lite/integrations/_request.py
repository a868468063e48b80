"""Reading an incoming HTTP request the same way in every adapter: headers, cookies, client IP, campaign."""

from __future__ import annotations

import functools
import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union
from urllib.parse import parse_qsl, unquote

#: ``utm_<x>`` query parameters become ``context.campaign.<x>``, except these.
_UTM_TO_CAMPAIGN = {"utm_campaign": "name"}

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


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
def parse_ip(text: str) -> Optional[IPAddress]:
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


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values)


def is_trusted(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
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
    peer = parse_ip(remote_addr)
    if peer is None or not is_trusted(peer, trusted_proxies):
        return remote_addr
    current = str(peer)
    for hop in reversed(forwarded_for.split(",")):
        if not hop.strip():
            continue
        address = parse_ip(hop)
        if address is None:
            return current
        current = str(address)
        if not is_trusted(address, trusted_proxies):
            return current
    return current


def last_forwarded_value(value: Optional[str]) -> Optional[str]:
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


def response_sets_cookie(set_cookie_values: Iterable[str], name: str) -> bool:
    """True when any of the response's ``Set-Cookie`` values sets cookie ``name``."""
    prefix = name + "="
    return any(value.lstrip().startswith(prefix) for value in set_cookie_values)


def media_type(content_type: Optional[str]) -> Optional[str]:
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
