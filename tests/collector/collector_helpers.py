"""Helpers shared by the collector tests (imported by name: tests/collector is on sys.path)."""

from __future__ import annotations

import gzip
import json
from typing import Any, Optional

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
