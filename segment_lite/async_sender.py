"""The asyncio driver of one batch's delivery: performs ``BatchCore``'s steps with awaited I/O and sleeps."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Generator
from typing import Any, Optional, TypeVar, Union

from segment_lite.async_transport import AsyncTransport, AsyncTransportFactory
from segment_lite.batch_core import BatchCore, Post, Reply, Settlement, Step
from segment_lite.errors import OAuthError, SegmentLiteError
from segment_lite.retry import Clock
from segment_lite.transport import Transport, TransportError, TransportResponse

__all__ = ["AsyncBatchSender"]

_T = TypeVar("_T")


class AsyncBatchSender(BatchCore):
    """Posts batches on the running event loop, as ``BatchCore``'s rules say; never blocks the loop.

    Waits are ``asyncio.sleep`` on the default clock; an injected clock (a
    ``FakeClock`` in tests) is asked to ``wait`` directly and must return at once.
    A transport whose ``post`` is not a coroutine function (a test double) is
    called on the loop. Shutdown interrupts a wait or a request by cancelling
    the task: the messages are settled (cut short) before it does.
    """

    def __init__(
        self, *, transport_factory: Union[AsyncTransportFactory, Any], abort: threading.Event, **core: Any
    ) -> None:
        super().__init__(**core)
        self._transport_factory = transport_factory
        self._transport: Optional[Union[AsyncTransport, Transport]] = None
        self._abort = abort
        self._real_clock = type(self.clock) is Clock

    async def _post(self, step: Post) -> TransportResponse:
        transport = self._transport
        if transport is None:
            transport = self._transport = self._transport_factory()
        response = transport.post(self.url, step.body, step.headers, step.timeout)
        if inspect.isawaitable(response):
            response = await response
        return response  # type: ignore[return-value]

    async def _sleep(self, seconds: float) -> bool:
        if not self._real_clock:
            return self.clock.wait(seconds, self._abort)
        if seconds > 0:
            await asyncio.sleep(seconds)
        return not self._abort.is_set()

    async def aclose(self) -> None:
        """Close the transport's connections."""
        transport, self._transport = self._transport, None
        if transport is None:
            return
        aclose = getattr(transport, "aclose", None)
        if aclose is not None:
            await aclose()
        else:
            transport.close()  # type: ignore[union-attr]

    async def post_once(self, items: list[bytes]) -> Optional[SegmentLiteError]:
        """One attempt at ``items`` now, on the loop: ``BatchCore.once_steps``, performed."""
        return await self._perform(self.once_steps(items))

    async def deliver(self, settlement: Settlement, deadline: Optional[float] = None) -> None:
        """Send the unsettled messages of ``settlement``, retrying as ``BatchCore.steps`` says."""
        await self._perform(self.steps(settlement, self._abort.is_set, deadline))

    async def _perform(self, steps: Generator[Step, Reply, _T]) -> _T:
        """Answer ``steps`` (posts and sleeps) until they return; what they return."""
        reply: Reply = None
        failed: Optional[Exception] = None
        try:
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
                            reply = await self._post(step)
                        except (TransportError, OAuthError) as exc:
                            reply = exc
                    else:
                        reply = await self._sleep(step.seconds)
                except Exception as exc:
                    failed = exc
        finally:
            steps.close()
