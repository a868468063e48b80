"""A minimal FastAPI app that tracks server-side pageviews with segment_lite.

Run a local collector (``segment-lite serve``, at http://127.0.0.1:8787), then:

    python examples/fastapi_app/app.py        (needs uvicorn)

Open http://127.0.0.1:8000/. Set SEGMENT_WRITE_KEY and SEGMENT_HOST to send elsewhere.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

import segment_lite
from segment_lite.integrations.asgi import SegmentPageviewMiddleware

segment_lite.write_key = os.environ.get("SEGMENT_WRITE_KEY", "local-dev-write-key")
segment_lite.host = os.environ.get("SEGMENT_HOST", "http://127.0.0.1:8787")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    # deliver what is still queued before the server exits, off the event loop
    await asyncio.to_thread(segment_lite.shutdown, 5.0)


app = FastAPI(lifespan=lifespan)
app.add_middleware(SegmentPageviewMiddleware, title=lambda info: "Home" if info.path == "/" else None)


@app.get("/", response_class=HTMLResponse)
async def home(request: Request) -> str:
    """The tracked page; the visitor's anonymous id is in the ASGI scope."""
    return f"<!doctype html><title>Home</title><h1>Hello, {request.scope['segment_lite.anonymous_id']}</h1>"


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=8000)
