"""Prototypes of changes proposed for modules outside the benchmark's remit, to measure them.

Each change has a name; a client kind ``lite-json+NAME`` (or ``lite-orjson+NAME``,
or several: ``lite-json+httpclient+gzip1``) runs segment_lite with it, e.g.
``python -m benchmarks.run --clients lite-json,lite-json+httpclient``.

* ``httpclient``: ``HTTPClientTransport``, a transport on the standard library's
  ``http.client`` (one kept-alive connection per consumer thread) instead of
  ``requests``. A measuring prototype, not a replacement: it has no proxy support
  and no stale-connection classification, which a real transport needs.
* ``gzip1``: compress request bodies at zlib level 1 instead of
  ``segment_lite.sender.GZIP_LEVEL`` (6).
"""

from __future__ import annotations

import http.client
from collections.abc import Mapping
from typing import Any, Optional, Union
from urllib.parse import urlsplit

from segment_lite.transport import TransportError, TransportResponse

__all__ = ["CHANGES", "HTTPClientTransport", "apply_changes"]

#: The changes that can be measured, and what each one is.
CHANGES = {
    "httpclient": "transport on http.client instead of requests",
    "gzip1": "gzip level 1 instead of 6",
}


class HTTPClientTransport:
    """Posts over one kept-alive ``http.client`` connection, reopened after an error."""

    def __init__(self) -> None:
        self._conn: Optional[Union[http.client.HTTPConnection, http.client.HTTPSConnection]] = None

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> TransportResponse:
        """Send ``body``; returns the response or raises ``TransportError``."""
        parts = urlsplit(url)
        if self._conn is None:
            if parts.scheme == "https":
                self._conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=timeout)
            else:
                self._conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
        try:
            self._conn.request("POST", parts.path or "/", body, dict(headers))
            response = self._conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise TransportError(f"{type(exc).__name__}: {exc}") from None
        return TransportResponse(response.status, dict(response.getheaders()), data)

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def apply_changes(changes: list[str], options: dict[str, Any]) -> None:
    """Apply ``changes`` to this process, or to ``options`` (``Client`` keyword arguments)."""
    for change in changes:
        if change == "httpclient":
            options["transport"] = HTTPClientTransport
        elif change == "gzip1":
            import segment_lite.sender

            segment_lite.sender.GZIP_LEVEL = 1  # read at each request
        else:
            raise ValueError(f"unknown change {change!r}")
