"""Helpers shared by the collector tests (imported by name: tests/collector is on sys.path)."""

from __future__ import annotations

import gzip
import json
import socket
import time
from typing import Any, Callable, Optional

import requests

from segment_lite.collector import Collector


def post(
    collector: Collector,
    path: str,
    body: Any,
    *,
    key: Optional[str] = "test-key",
    gzipped: bool = False,
    headers: Optional[dict[str, str]] = None,
    timeout: float = 10.0,
) -> requests.Response:
    """POST ``body`` (JSON-encoded unless bytes) to the collector with Basic auth ``key``."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    if gzipped:
        data = gzip.compress(data)
        hdrs["Content-Encoding"] = "gzip"
    auth = (key, "") if key is not None else None
    return requests.post(collector.url + path, data=data, headers=hdrs, auth=auth, timeout=timeout)


def track(n: int = 0, **extra: Any) -> dict[str, Any]:
    """A valid track message."""
    message: dict[str, Any] = {
        "type": "track",
        "userId": f"user-{n}",
        "event": "Item Viewed",
        "messageId": f"msg-{n}",
        "properties": {"n": n},
    }
    message.update(extra)
    return message


def connect(collector: Collector) -> socket.socket:
    """A raw TCP connection to the collector."""
    return socket.create_connection(("127.0.0.1", collector.port), timeout=10)


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 answer (status, lower-cased headers, body) from a raw socket.

    Raises ConnectionError if the connection closes before the answer's head.
    """
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before an answer; got {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status, *_ = lines[0].split(" ", 2)
    assert version == "HTTP/1.1", lines[0]
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status), headers, body[:length]


def wait_until(condition: Callable[[], Any], timeout: float = 10.0) -> bool:
    """Poll ``condition`` until it is true; False if ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return False
