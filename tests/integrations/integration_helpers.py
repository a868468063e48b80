"""Message builders and small helpers shared by the framework integration tests."""

from __future__ import annotations

import re
from typing import Any, Optional

from segment_lite.version import VERSION

BROWSER_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
)
UUID4_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TIMESTAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
LIBRARY = {"name": "segment-lite", "version": VERSION}


def wire(message: dict[str, Any]) -> dict[str, Any]:
    """A recorded message without its per-call messageId and timestamp, after checking both."""
    assert UUID4_RE.match(message["messageId"]), message["messageId"]
    assert TIMESTAMP_RE.match(message["timestamp"]), message["timestamp"]
    return {k: v for k, v in message.items() if k not in ("messageId", "timestamp")}


def page_message(
    *,
    anonymous_id: str,
    host: str = "testserver",
    path: str = "/",
    search: str = "",
    scheme: str = "http",
    referrer: str = "",
    title: Optional[str] = None,
    ip: Optional[str] = "127.0.0.1",
    user_agent: Optional[str] = BROWSER_UA,
    user_id: Optional[str] = None,
    locale: Optional[str] = None,
    campaign: Optional[dict[str, str]] = None,
    name: Optional[str] = None,
    category: Optional[str] = None,
    extra_properties: Optional[dict[str, Any]] = None,
    extra_context: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """The page message the integrations should put on the wire (minus messageId/timestamp)."""
    url = f"{scheme}://{host}{path}{search}"
    page: dict[str, Any] = {"path": path, "referrer": referrer, "search": search, "url": url}
    if title is not None:
        page["title"] = title
    context: dict[str, Any] = {"page": dict(page)}
    if ip is not None:
        context["ip"] = ip
    if user_agent is not None:
        context["userAgent"] = user_agent
    if locale is not None:
        context["locale"] = locale
    if campaign is not None:
        context["campaign"] = campaign
    context.update(extra_context or {})
    context["library"] = LIBRARY
    message: dict[str, Any] = {
        "type": "page",
        "anonymousId": anonymous_id,
        "properties": {"host": host, **page, **(extra_properties or {})},
        "context": context,
    }
    if user_id is not None:
        message["userId"] = user_id
    if name is not None:
        message["name"] = name
    if category is not None:
        message["category"] = category
    return message


def parse_set_cookie(header: str) -> tuple[str, str, dict[str, str]]:
    """Split a Set-Cookie value into (name, value, {attribute-lower: value})."""
    first, *attrs = [part.strip() for part in header.split(";")]
    name, _, value = first.partition("=")
    attributes: dict[str, str] = {}
    for attr in attrs:
        key, _, val = attr.partition("=")
        attributes[key.lower()] = val
    return name, value, attributes


EXPECTED_COOKIE_ATTRS = {"path": "/", "max-age": "31536000", "samesite": "Lax"}


class Boom(RuntimeError):
    """Raised by deliberately broken clients and callables."""


class ExplodingClient:
    """A client whose page() always raises, to prove tracking errors never reach the app."""

    def __init__(self) -> None:
        self.calls = 0

    def page(self, **kwargs: Any) -> Any:
        self.calls += 1
        raise Boom("tracking exploded")
