"""A FastAPI app on a real uvicorn, with an AsyncClient, delivers every event across a SIGTERM.

The app tracks from its handlers (no await), the pageview middleware tracks pages,
and the lifespan shutdown awaits the client's ``shutdown()``. Nothing leaves before
SIGTERM (an hour-long upload interval); uvicorn re-raises the signal after its
graceful shutdown, so only the lifespan is left to deliver.
"""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path

import pytest
from test_uvicorn import PAGEVIEWS, get_page, start_uvicorn

pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytestmark = [
    pytest.mark.frameworks,
    pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="needs POSIX signals"),
]

ASYNC_FASTAPI_APP = """
import os
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from segment_lite import AsyncClient
from segment_lite.integrations.asgi import SegmentPageviewMiddleware

client = AsyncClient("uvicorn-key", host=os.environ["SEGMENT_HOST"], upload_interval=3600)

@asynccontextmanager
async def lifespan(app):
    yield
    client.track("server", "Server Stopped")
    assert await client.shutdown(10)

app = FastAPI(lifespan=lifespan)
app.add_middleware(SegmentPageviewMiddleware, client=client)

@app.get("/", response_class=HTMLResponse)
async def home():
    client.track("visitor", "Home Served")
    return "<p>hello</p>"
"""


def test_sigterm_delivers_every_event_of_an_async_client(collector, tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(textwrap.dedent(ASYNC_FASTAPI_APP))
    server, port = start_uvicorn(tmp_path, collector.url)
    try:
        assert [get_page(port) for _ in range(PAGEVIEWS)] == [200] * PAGEVIEWS
        assert collector.messages() == []  # all still queued in the server process
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == -signal.SIGTERM, stderr
    messages = collector.messages()
    assert [m["type"] for m in messages].count("page") == PAGEVIEWS, stderr
    tracks = [m["event"] for m in messages if m["type"] == "track"]
    assert tracks.count("Home Served") == PAGEVIEWS and tracks.count("Server Stopped") == 1, stderr
    assert len({m["messageId"] for m in messages}) == len(messages)
    assert "Traceback" not in stderr and "never awaited" not in stderr, stderr
