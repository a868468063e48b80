"""A minimal FastAPI app that tracks server-side pageviews with segment_lite.

    pip install ".[fastapi]"                  # from the repository root: FastAPI and uvicorn too
    segment-lite serve                        # terminal 1: a local collector, http://127.0.0.1:8787
    python examples/fastapi_app/app.py        # terminal 2: this app, http://127.0.0.1:8000/

Open http://127.0.0.1:8000/ in a browser and watch the "Home" page event arrive in the
collector. curl counts as a bot and is not tracked: the app logs why it skipped each
request (``debug=True``). To try with curl, send a browser-like User-Agent:
``curl -A "Mozilla/5.0" http://127.0.0.1:8000/``.

Stopping the server (Ctrl-C, SIGTERM) flushes what is queued: the middleware does it at
the ASGI lifespan shutdown. Set SEGMENT_WRITE_KEY and SEGMENT_HOST to send elsewhere.
"""

from __future__ import annotations

import os

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

import segment_lite
from segment_lite.integrations.asgi import SegmentPageviewMiddleware

segment_lite.write_key = os.environ.get("SEGMENT_WRITE_KEY", "local-dev-write-key")
segment_lite.host = os.environ.get("SEGMENT_HOST", "http://127.0.0.1:8787")

PAGE_NAMES = {"/": "Home"}

app = FastAPI()
app.add_middleware(
    SegmentPageviewMiddleware,
    name=lambda info: PAGE_NAMES.get(info.path),
    title=lambda info: PAGE_NAMES.get(info.path),
    debug=True,  # log why a request was not tracked (bot, static file, not a page...)
)


@app.get("/", response_class=HTMLResponse)
async def home(request: Request) -> str:
    """The tracked page; the visitor's anonymous id is in the ASGI scope."""
    return f"<!doctype html><title>Home</title><h1>Hello, {request.scope['segment_lite.anonymous_id']}</h1>"


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=8000)
