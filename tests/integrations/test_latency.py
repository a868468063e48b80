"""A latency report: time each request with and without the pageview middleware.

Nothing here asserts on timing (machines differ); the test prints median and p99 and
asserts only that every request was tracked.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterable
from typing import Any, Callable
from wsgiref.util import setup_testing_defaults

import pytest
from integration_helpers import BROWSER_UA

from segment_lite.integrations.asgi import SegmentPageviewMiddleware as ASGIMiddleware
from segment_lite.integrations.wsgi import SegmentPageviewMiddleware as WSGIMiddleware
from segment_lite.testing import RecordingClient

REQUESTS = 500
WARMUP = 50


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def report(label: str, bare: list[float], wrapped: list[float]) -> str:
    bare_median, wrapped_median = statistics.median(bare), statistics.median(wrapped)
    return (
        f"{label:<6} bare median {bare_median:7.1f} us p99 {percentile(bare, 0.99):7.1f} us | "
        f"with middleware median {wrapped_median:7.1f} us p99 {percentile(wrapped, 0.99):7.1f} us | "
        f"added median {wrapped_median - bare_median:6.1f} us"
    )


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    return [b"<html><body>hello</body></html>"]


def wsgi_environ(index: int) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "PATH_INFO": f"/articles/{index}",
        "QUERY_STRING": "utm_source=newsletter&utm_medium=email",
        "HTTP_USER_AGENT": BROWSER_UA,
        "HTTP_ACCEPT_LANGUAGE": "en-US,en;q=0.9",
        "HTTP_REFERER": "https://www.example.org/",
        "REMOTE_ADDR": "10.0.0.2",
        "HTTP_X_FORWARDED_FOR": "198.51.100.23",
    }
    setup_testing_defaults(environ)
    return environ


def time_wsgi(app: Callable[..., Iterable[bytes]], count: int) -> list[float]:
    samples = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return None

    for index in range(count):
        environ = wsgi_environ(index)
        started = time.perf_counter_ns()
        body = b"".join(app(environ, start_response))
        samples.append((time.perf_counter_ns() - started) / 1000)
        assert body
    return samples


async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
    await send({"type": "http.response.body", "body": b"<html><body>hello</body></html>"})


async def time_asgi(app: Any, count: int) -> list[float]:
    samples = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    for index in range(count):
        scope = {
            "type": "http",
            "method": "GET",
            "scheme": "http",
            "path": f"/articles/{index}",
            "raw_path": f"/articles/{index}".encode(),
            "query_string": b"utm_source=newsletter&utm_medium=email",
            "headers": [
                (b"host", b"example.com"),
                (b"user-agent", BROWSER_UA.encode()),
                (b"accept-language", b"en-US,en;q=0.9"),
            ],
            "client": ("203.0.113.5", 5555),
        }
        started = time.perf_counter_ns()
        await app(scope, receive, send)
        samples.append((time.perf_counter_ns() - started) / 1000)
    return samples


@pytest.fixture
def queueing_recorder() -> Any:
    # queueing mode, as in production: the request thread only enqueues
    client = RecordingClient(sync_mode=False, max_queue_size=100_000)
    try:
        yield client
    finally:
        client.shutdown()


def test_wsgi_latency_report(queueing_recorder: RecordingClient, capsys: pytest.CaptureFixture[str]) -> None:
    wrapped = WSGIMiddleware(wsgi_app, client=queueing_recorder, trusted_proxies=["10.0.0.0/8"])
    time_wsgi(wsgi_app, WARMUP)
    time_wsgi(wrapped, WARMUP)
    bare = time_wsgi(wsgi_app, REQUESTS)
    with_middleware = time_wsgi(wrapped, REQUESTS)
    assert queueing_recorder.flush(timeout=30)
    assert len(queueing_recorder.messages) == WARMUP + REQUESTS
    assert wrapped.tracker.tracked == WARMUP + REQUESTS and wrapped.errors == 0
    with capsys.disabled():
        print("\n" + report("WSGI", bare, with_middleware))


def test_asgi_latency_report(queueing_recorder: RecordingClient, capsys: pytest.CaptureFixture[str]) -> None:
    wrapped = ASGIMiddleware(asgi_app, client=queueing_recorder)

    async def measure() -> tuple[list[float], list[float]]:
        await time_asgi(asgi_app, WARMUP)
        await time_asgi(wrapped, WARMUP)
        return await time_asgi(asgi_app, REQUESTS), await time_asgi(wrapped, REQUESTS)

    bare, with_middleware = asyncio.run(measure())
    assert queueing_recorder.flush(timeout=30)
    assert len(queueing_recorder.messages) == WARMUP + REQUESTS
    assert wrapped.tracker.tracked == WARMUP + REQUESTS and wrapped.errors == 0
    with capsys.disabled():
        print("\n" + report("ASGI", bare, with_middleware))
