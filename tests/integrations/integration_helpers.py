"""Message builders and small helpers shared by the framework integration tests."""

from __future__ import annotations

import asyncio
import re
from types import TracebackType
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
    # userId, name and category are present even when None, and integrations is {} by
    # default, as segment-analytics-python sends them.
    return {
        "type": "page",
        "userId": user_id,
        "anonymousId": anonymous_id,
        "name": name,
        "category": category,
        "properties": {"host": host, **page, **(extra_properties or {})},
        "context": context,
        "integrations": {},
    }


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


class ASGITestClient:
    """Drive an ASGI app as a server does, without a socket, from synchronous tests.

    Entering runs the lifespan startup, requests go through httpx's ``ASGITransport``,
    and leaving runs the lifespan shutdown. The peer address is ``testclient``.
    ``lifespan_messages`` lists what the app sent on the lifespan scope.
    """

    def __init__(self, app: Any, base_url: str = "http://testserver") -> None:
        self.app = app
        self.base_url = base_url
        self.lifespan_messages: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()

    def __enter__(self) -> ASGITestClient:
        self._loop.run_until_complete(self._startup())
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        try:
            self._loop.run_until_complete(self._shutdown())
        finally:
            self._loop.close()

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        """Send one request; returns the ``httpx.Response``."""
        return self._loop.run_until_complete(self._http.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.request("GET", url, **kwargs)

    async def _startup(self) -> None:
        import httpx

        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def receive() -> dict[str, Any]:
            return await self._inbox.get()

        async def send(message: dict[str, Any]) -> None:
            self.lifespan_messages.append(message)
            await self._answers.put(message)

        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        self._task = asyncio.ensure_future(self.app(scope, receive, send))
        await self._inbox.put({"type": "lifespan.startup"})
        answer = await self._next_answer()
        assert answer["type"] == "lifespan.startup.complete", answer
        transport = httpx.ASGITransport(app=self.app, client=("testclient", 50000))
        self._http = httpx.AsyncClient(transport=transport, base_url=self.base_url)

    async def _shutdown(self) -> None:
        await self._http.aclose()
        await self._inbox.put({"type": "lifespan.shutdown"})
        answer = await self._next_answer()
        assert answer["type"] == "lifespan.shutdown.complete", answer
        await self._task

    async def _next_answer(self) -> dict[str, Any]:
        answer = asyncio.ensure_future(self._answers.get())
        done, _ = await asyncio.wait({answer, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if answer in done:
            return answer.result()
        answer.cancel()
        self._task.result()  # raises what the app raised
        raise AssertionError("the app ended its lifespan without answering")
