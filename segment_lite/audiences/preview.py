"""A local preview page: audience sizes, sample members and each user's values, from a collector's store.

``segment-lite audiences serve DEFINITIONS --db collected.db`` beside
``segment-lite serve --db collected.db``: every load computes from the events
stored so far, so a developer sees whether their instrumentation supports the
audiences before building them in Segment. Loopback only; the page loads
nothing from elsewhere and writes every value as text.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional, Union
from urllib.parse import parse_qs, urlsplit

__all__ = ["PreviewServer", "preview_data"]

_SECURITY_HEADERS = (
    ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'"),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
)
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")
MAX_SAMPLE = 100


def preview_data(result: Any, sample: int, users: list[str]) -> dict[str, Any]:
    """What a preview shows, JSON-ready: sizes and sample members per audience, and some users' values."""
    audiences = []
    for audience in result.definitions.audiences:
        members = result.members(audience.key)
        audiences.append(
            {"name": audience.name, "key": audience.key, "size": len(members), "sample": members[:sample]}
        )
    shown = users or sorted(result.users)[: min(3, sample)]
    return {
        "now": result.now.isoformat() + "Z",
        "users": len(result.users),
        "inputs": result.inputs.as_dict(),
        "audiences": audiences,
        "values": {u: result.users.get(u) for u in shown},
    }


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>segment-lite audiences preview</title>
<link rel="stylesheet" href="/preview.css">
<script src="/preview.js" defer></script>
</head>
<body>
<h1>Audiences preview</h1>
<p id="summary">Computing...</p>
<table id="audiences">
<thead><tr><th>Audience</th><th>Trait key</th><th>Members</th><th>Sample</th></tr></thead>
<tbody></tbody>
</table>
<form id="lookup"><label>userId <input id="user" name="user"></label> <button>Show values</button></form>
<h2 id="user-title"></h2>
<table id="values"><tbody></tbody></table>
<p id="error" role="alert"></p>
</body>
</html>
"""

_CSS = """body { font: 14px system-ui, sans-serif; margin: 2em; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 4px 8px; text-align: left; }
button.member { margin: 0 4px 4px 0; }
#error { color: #b00; }
"""

_SCRIPT = """"use strict";
function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}
async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json();
  if (!response.ok) { throw new Error(body.message || response.statusText); }
  return body;
}
function showValues(user, values) {
  document.getElementById("user-title").textContent = values ? user : user + " (no events)";
  const body = document.querySelector("#values tbody");
  body.replaceChildren();
  for (const [key, value] of Object.entries(values || {})) {
    const row = document.createElement("tr");
    row.dataset.key = key;
    cell(row, key);
    cell(row, JSON.stringify(value));
    body.appendChild(row);
  }
}
async function lookUp(user) {
  try {
    const data = await getJSON("/api/user?id=" + encodeURIComponent(user));
    showValues(user, data.values);
  } catch (error) { document.getElementById("error").textContent = String(error.message); }
}
async function load() {
  try {
    const data = await getJSON("/api/preview?sample=10");
    const skipped = Object.entries(data.inputs.skipped).map(([k, v]) => k + ": " + v).join(", ") || "none";
    document.getElementById("summary").textContent = data.users + " users at " + data.now +
      " from " + data.inputs.used + " events (left out: " + skipped + ")";
    const body = document.querySelector("#audiences tbody");
    body.replaceChildren();
    for (const audience of data.audiences) {
      const row = document.createElement("tr");
      row.className = "audience";
      row.dataset.key = audience.key;
      cell(row, audience.name);
      cell(row, audience.key);
      cell(row, String(audience.size)).className = "size";
      const sample = cell(row, "");
      for (const member of audience.sample) {
        const button = document.createElement("button");
        button.className = "member";
        button.type = "button";
        button.textContent = member;
        button.addEventListener("click", () => lookUp(member));
        sample.appendChild(button);
      }
      body.appendChild(row);
    }
  } catch (error) { document.getElementById("error").textContent = String(error.message); }
}
document.getElementById("lookup").addEventListener("submit", (event) => {
  event.preventDefault();
  lookUp(document.getElementById("user").value);
});
load();
"""

_STATIC = {
    "/": (_PAGE, "text/html; charset=utf-8"),
    "/index.html": (_PAGE, "text/html; charset=utf-8"),
    "/preview.js": (_SCRIPT, "text/javascript; charset=utf-8"),
    "/preview.css": (_CSS, "text/css; charset=utf-8"),
}


class PreviewServer:
    """Serves the preview page on ``host:port`` (port 0: any free one) until :meth:`stop`.

    Each page load computes ``definitions`` over the collector store ``db``
    (read through ``EventStore``) at ``now`` (default: the clock).
    """

    def __init__(
        self,
        definitions: Union[str, Any],
        db: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        now: Optional[str] = None,
    ) -> None:
        from segment_lite.audiences.definitions import Definitions, load_definitions

        self.definitions = (
            definitions if isinstance(definitions, Definitions) else load_definitions(definitions)
        )
        self.db = db
        self.now = now
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        """The page's address."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> PreviewServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="audiences-preview", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self._server.serve_forever()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> PreviewServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _compute(self) -> Any:
        from segment_lite.audiences.compute import compute

        with self._lock:  # one computation at a time: DuckDB already uses every core
            return compute(self.definitions, [self.db], now=self.now, input_format="collector")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet: the terminal is the user's
                pass

            def _send(self, status: int, body: str, content_type: str) -> None:
                data = body.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                for name, value in _SECURITY_HEADERS:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _json(self, status: int, body: dict[str, Any]) -> None:
                self._send(status, json.dumps(body, ensure_ascii=False), "application/json")

            def do_GET(self) -> None:
                host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
                if host not in _LOCAL_HOSTS:  # DNS rebinding: only answer to loopback names
                    self._json(
                        403, {"error": "forbidden_host", "message": "the preview answers only to localhost"}
                    )
                    return
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                if parts.path == "/favicon.ico":
                    self.send_response(204)
                    self.end_headers()
                    return
                if parts.path in _STATIC:
                    text, content_type = _STATIC[parts.path]
                    self._send(200, text, content_type)
                    return
                if parts.path not in ("/api/preview", "/api/user"):
                    self._json(404, {"error": "not_found", "message": f"nothing at {parts.path[:100]}"})
                    return
                try:
                    result = server._compute()
                except Exception as exc:  # shown on the page: a bad store or definitions
                    self._json(500, {"error": "compute_failed", "message": str(exc)[:500]})
                    return
                if parts.path == "/api/user":
                    user = (query.get("id") or [""])[0]
                    self._json(200, {"userId": user, "values": result.users.get(user)})
                    return
                raw = (query.get("sample") or ["10"])[0]
                sample = min(MAX_SAMPLE, int(raw)) if raw.isascii() and raw.isdigit() else 10
                self._json(200, preview_data(result, sample, []))

        return Handler
