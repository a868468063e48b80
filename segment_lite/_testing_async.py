"""``RecordingAsyncClient``: an ``AsyncClient`` whose batches are captured in memory (see ``testing``)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from typing import Any, Optional

from segment_lite.async_client import AsyncClient
from segment_lite.transport import TransportResponse

__all__ = ["RecordingAsyncClient"]


class _AsyncRecordingTransport:
    """An ``AsyncTransport`` that answers 200 and hands each batch body to its client."""

    def __init__(self, client: RecordingAsyncClient) -> None:
        self._client = client

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> TransportResponse:
        if headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        payload = {key: value for key, value in json.loads(body).items() if key != "writeKey"}
        self._client.batches.append(payload)
        self._client.messages.extend(payload["batch"])
        return TransportResponse(200, {}, b'{"success":true}')

    async def aclose(self) -> None:
        return None


class RecordingAsyncClient(AsyncClient):
    """An ``AsyncClient`` that records the messages it would send, as they would go on the wire.

    A message is in ``messages`` once delivered: after ``await flush()``, or when
    a ``*_now`` call returns. ``strict`` is on by default, as for ``RecordingClient``.
    """

    def __init__(self, write_key: str = "test-write-key", **kwargs: Any) -> None:
        kwargs.setdefault("strict", True)
        self.messages: list[dict[str, Any]] = []
        self.batches: list[dict[str, Any]] = []
        super().__init__(write_key, transport=lambda: _AsyncRecordingTransport(self), **kwargs)

    def clear(self) -> None:
        """Forget everything recorded so far."""
        self.messages.clear()
        self.batches.clear()

    def find(
        self, type: Optional[str] = None, event: Optional[str] = None, **fields: Any
    ) -> list[dict[str, Any]]:
        """Recorded messages matching ``type``, ``event`` and any other top-level fields given."""
        wanted = dict(fields)
        if type is not None:
            wanted["type"] = type
        if event is not None:
            wanted["event"] = event
        return [m for m in self.messages if all(m.get(k) == v for k, v in wanted.items())]
