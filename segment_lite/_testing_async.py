"""``RecordingAsyncClient``: an ``AsyncClient`` whose batches are captured in memory (see ``testing``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from segment_lite._recording import Recorder
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
        return self._client._record(body, headers)

    async def aclose(self) -> None:
        return None


class RecordingAsyncClient(AsyncClient, Recorder):
    """An ``AsyncClient`` that records the messages it would send, as they would go on the wire.

    A message is in ``messages`` once delivered: after ``await flush()``, or when
    a ``*_now`` call returns. ``strict`` is on by default, as for ``RecordingClient``.
    """

    def __init__(self, write_key: str = "test-write-key", **kwargs: Any) -> None:
        kwargs.setdefault("strict", True)
        self._start_recording()
        super().__init__(write_key, transport=lambda: _AsyncRecordingTransport(self), **kwargs)
