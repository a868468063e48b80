"""A minimal Flask app that tracks server-side pageviews with segment_lite.

    pip install ".[flask]"                    # from the repository root
    segment-lite serve                        # terminal 1: a local collector, http://127.0.0.1:8787
    python examples/flask_app/app.py          # terminal 2: this app, http://127.0.0.1:5000/

Open http://127.0.0.1:5000/ in a browser and watch the "Home" page event arrive in the
collector. curl counts as a bot and is not tracked: the app logs why it skipped each
request (``debug=True``). To try with curl, send a browser-like User-Agent:
``curl -A "Mozilla/5.0" http://127.0.0.1:5000/``.

Set SEGMENT_WRITE_KEY and SEGMENT_HOST to send elsewhere.
"""

from __future__ import annotations

import os

from flask import Flask, g

import segment_lite
from segment_lite.integrations.flask import SegmentPageviews

segment_lite.write_key = os.environ.get("SEGMENT_WRITE_KEY", "local-dev-write-key")
segment_lite.host = os.environ.get("SEGMENT_HOST", "http://127.0.0.1:8787")

PAGE_NAMES = {"/": "Home"}

app = Flask(__name__)
SegmentPageviews(
    app,
    name=lambda info: PAGE_NAMES.get(info.path),
    title=lambda info: PAGE_NAMES.get(info.path),
    debug=True,  # log why a request was not tracked (bot, static file, not a page...)
)


@app.get("/")
def home() -> str:
    """The tracked page; the visitor's anonymous id is on ``flask.g``."""
    return f"<!doctype html><title>Home</title><h1>Hello, {g.segment_anonymous_id}</h1>"


if __name__ == "__main__":
    app.run(port=5000)
