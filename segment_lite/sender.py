"""The threaded driver of one batch's delivery: performs ``BatchCore``'s steps with blocking I/O and waits."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Optional

from segment_lite.batch_core import (
    GZIP_LEVEL,
    MAX_BATCH_COUNT,
    BatchCore,
    PipelinePause,
    Post,
    Reply,
    Settlement,
    batch_headers,
)
from segment_lite.errors import OAuthError, SegmentLiteError
from segment_lite.transport import (
    StaleConnection,
    Transport,
    TransportError,
    TransportFactory,
    TransportResponse,
)

__all__ = [
    "GZIP_LEVEL",
    "MAX_BATCH_COUNT",
    "BatchSender",
    "PipelinePause",
    "Settlement",
    "batch_headers",
]


class BatchSender(BatchCore):
    """Posts batches of encoded messages on the calling thread, as ``BatchCore``'s rules say.

    One sender per worker thread: its transport (made on first use) is used by
    that thread only, except for ``abort`` from a shutdown that gave up.
    """

    def __init__(self, *, transport_factory: TransportFactory, **core: Any) -> None:
        super().__init__(**core)
        self._transport_factory = transport_factory
        self._transport: Optional[Transport] = None

    def _post(self, body: bytes, headers: Mapping[str, str], timeout: float) -> TransportResponse:
        """One request on this sender's transport (made on first use); raises ``TransportError``."""
        if self._transport is None:
            self._transport = self._transport_factory()
        return self._transport.post(self.url, body, headers, timeout)

    def close(self) -> None:
        """Close the transport's connections."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def abort(self) -> None:
        """Close the connection of a request in flight, from another thread (shutdown gave up)."""
        transport = self._transport  # read once: close() on the sending thread may clear it
        if transport is not None:
            transport.abort()

    def post_once(self, items: list[bytes]) -> Optional[SegmentLiteError]:
        """One attempt at ``items`` on the calling thread, as segment-analytics-python's sync mode makes it.

        Returns None when the server accepted them (counted as delivered), else
        the error for the caller to raise: an ``APIError`` for an answer that is
        not 2xx, a ``RetriesExhaustedError`` (one attempt, ``status`` None) when
        none came. Nothing is retried, waited for, counted as dropped or
        reported here; only a kept-alive connection the server had closed is
        replaced at once, as for every request.
        """
        body = self._body(items)
        reply: Reply
        try:
            try:
                reply = self._post(body, self._headers, self.timeout)
            except StaleConnection:  # closed by the server while idle: once more, at once
                reply = self._post(body, self._headers, self.timeout)
        except (TransportError, OAuthError) as exc:
            reply = exc
        return self.once_verdict(items, reply)

    def deliver(
        self, settlement: Settlement, abort: threading.Event, deadline: Optional[float] = None
    ) -> None:
        """Send the unsettled messages of ``settlement``, retrying as the policy says.

        Every message ends settled, except when ``deadline`` (monotonic seconds)
        comes first: those not yet settled are then left so, for a later call.
        Once ``abort`` is set (shutdown gave up) they are dropped as ``shutdown_timeout``.
        """
        steps = self.steps(settlement, abort.is_set, deadline)
        clock = self.clock
        reply: Reply = None
        failed: Optional[Exception] = None
        while True:
            try:
                # A driver's unexpected error goes into the core, which settles what it must.
                step = steps.send(reply) if failed is None else steps.throw(failed)
            except StopIteration:
                return
            failed = None
            try:
                if isinstance(step, Post):
                    try:
                        reply = self._post(step.body, step.headers, step.timeout)
                    except (TransportError, OAuthError) as exc:
                        reply = exc
                else:
                    reply = clock.wait(step.seconds, abort)
            except Exception as exc:
                failed = exc
