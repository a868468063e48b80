"""A real uvicorn server stopped with SIGTERM delivers what the app queued, through the ASGI middleware.

uvicorn re-raises SIGTERM after its graceful shutdown, so the process ends by the signal
and ``atexit`` (the client's exit flush) never runs: the lifespan shutdown is the only
moment left to deliver. Each app here uses a client with an hour-long upload interval, so
nothing leaves before shutdown unless something flushes it.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from integration_helpers import BROWSER_UA

pytest.importorskip("uvicorn")
pytestmark = [
    pytest.mark.frameworks,
    pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="needs POSIX signals"),
]

REPO_ROOT = Path(__file__).resolve().parents[2]
PAGEVIEWS = 20

CLIENT_SETUP = """
import os
import segment_lite
from segment_lite.integrations.asgi import SegmentPageviewMiddleware

client = segment_lite.Client("uvicorn-key", host=os.environ["SEGMENT_HOST"], upload_interval=3600)
"""

# A plain ASGI app: it serves HTTP and knows nothing of lifespan (it refuses the scope).
PLAIN_APP = (
    CLIENT_SETUP
    + """
async def pages(scope, receive, send):
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
    await send({"type": "http.response.body", "body": b"<p>hello</p>"})

app = SegmentPageviewMiddleware(pages, client=client)
"""
)

# A FastAPI app with a lifespan of its own, which tracks one more event on its way out.
FASTAPI_APP = (
    CLIENT_SETUP
    + """
from contextlib import asynccontextmanager
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

@asynccontextmanager
async def lifespan(app):
    yield
    client.track("server", "Server Stopped")

app = FastAPI(lifespan=lifespan)
app.add_middleware(SegmentPageviewMiddleware, client=client)

@app.get("/", response_class=HTMLResponse)
async def home():
    return "<p>hello</p>"
"""
)


def start_uvicorn(app_dir: Path, collector_url: str) -> tuple[subprocess.Popen[str], int]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        "SEGMENT_HOST": collector_url,
    }
    command = [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", "0"]
    command += ["--app-dir", str(app_dir), "--log-level", "info"]
    server = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    assert server.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = server.stderr.readline()
        if not line:
            break
        found = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line)
        if found:
            return server, int(found.group(1))
    server.kill()
    raise AssertionError(f"uvicorn did not start: {server.stderr.read()}")


def get_page(port: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/", headers={"User-Agent": BROWSER_UA})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("source", "expected_tracks"),
    [(PLAIN_APP, []), (FASTAPI_APP, ["Server Stopped"])],
    ids=["plain-asgi-app", "fastapi-app-with-lifespan"],
)
def test_sigterm_delivers_the_queue_through_the_lifespan_shutdown(
    collector, tmp_path: Path, source: str, expected_tracks: list[str]
) -> None:
    if "fastapi" in source:
        pytest.importorskip("fastapi")
    (tmp_path / "app.py").write_text(textwrap.dedent(source))
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
    # uvicorn re-raised SIGTERM: the process died by the signal, so atexit never ran.
    assert server.returncode == -signal.SIGTERM, stderr
    messages = collector.messages()
    assert [m["type"] for m in messages].count("page") == PAGEVIEWS, stderr
    assert [m["event"] for m in messages if m["type"] == "track"] == expected_tracks
    assert len({m["messageId"] for m in messages}) == len(messages)
