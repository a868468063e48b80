"""``Recorder``: what ``RecordingClient`` and ``RecordingAsyncClient`` keep of the batches they capture."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Mapping
from typing import Any, Optional

from segment_lite.transport import TransportResponse

__all__ = ["Recorder"]


class Recorder:
    """What a recording client keeps: each batch it would send, and the messages in them."""

    def _start_recording(self) -> None:
        self._record_lock = threading.Lock()
        self.messages: list[dict[str, Any]] = []
        self.batches: list[dict[str, Any]] = []

    def _record(self, body: bytes, headers: Mapping[str, str]) -> TransportResponse:
        """Keep one batch body as the server would read it; return the server's answer (200)."""
        if headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        # The recorded batch omits the write key, like everything else users see.
        payload = {key: value for key, value in json.loads(body).items() if key != "writeKey"}
        with self._record_lock:
            self.batches.append(payload)
            self.messages.extend(payload["batch"])
        return TransportResponse(200, {}, b'{"success":true}')

    def clear(self) -> None:
        """Forget everything recorded so far."""
        with self._record_lock:
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
        with self._record_lock:
            return [m for m in self.messages if all(m.get(k) == v for k, v in wanted.items())]
