"""The threaded driver of one batch's delivery: performs ``BatchCore``'s steps with blocking I/O and waits."""

from __future__ import annotations

import threading
from collections.abc import Generator, Mapping
from typing import Any, Optional, TypeVar

from segment_lite.batch_core import (
    GZIP_LEVEL,
    MAX_BATCH_COUNT,
    BatchCore,
    PipelinePause,
    Post,
    Reply,
    Settlement,
    Step,
    batch_headers,
)
from segment_lite.errors import OAuthError, SegmentLiteError
from segment_lite.transport import (
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


_T = TypeVar("_T")
#: The abort flag of an immediate send, which has no waits to interrupt.
_NEVER_ABORTED = threading.Event()


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
        """One attempt at ``items`` on the calling thread: ``BatchCore.once_steps``, performed."""
        return self._perform(self.once_steps(items), _NEVER_ABORTED)

    def deliver(
        self, settlement: Settlement, abort: threading.Event, deadline: Optional[float] = None
    ) -> None:
        """Send the unsettled messages of ``settlement``, retrying as the policy says.

        Every message ends settled, except when ``deadline`` (monotonic seconds)
        comes first: those not yet settled are then left so, for a later call.
        Once ``abort`` is set (shutdown gave up) they are dropped as ``shutdown_timeout``.
        """
        self._perform(self.steps(settlement, abort.is_set, deadline), abort)

    def _perform(self, steps: Generator[Step, Reply, _T], abort: threading.Event) -> _T:
        """Answer ``steps`` (posts and waits) until they return; what they return."""
        clock = self.clock
        reply: Reply = None
        failed: Optional[Exception] = None
        while True:
            try:
                # A driver's unexpected error goes into the core, which settles what it must.
                step = steps.send(reply) if failed is None else steps.throw(failed)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
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
