"""A minimal Flask app that tracks server-side pageviews with segment_lite.

Run a local collector (``segment-lite serve``, at http://127.0.0.1:8787), then:

    python examples/flask_app/app.py

Open http://127.0.0.1:5000/. Set SEGMENT_WRITE_KEY and SEGMENT_HOST to send elsewhere.
"""

from __future__ import annotations

import os

from flask import Flask, g

import segment_lite
from segment_lite.integrations.flask import SegmentPageviews

segment_lite.write_key = os.environ.get("SEGMENT_WRITE_KEY", "local-dev-write-key")
segment_lite.host = os.environ.get("SEGMENT_HOST", "http://127.0.0.1:8787")

app = Flask(__name__)
SegmentPageviews(app, title=lambda info: "Home" if info.path == "/" else None)


@app.get("/")
def home() -> str:
    """The tracked page; the visitor's anonymous id is on ``flask.g``."""
    return f"<!doctype html><title>Home</title><h1>Hello, {g.segment_anonymous_id}</h1>"


if __name__ == "__main__":
    app.run(port=5000)
