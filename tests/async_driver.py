"""The asyncio driver behind ``Client``'s blocking calls, so delivery tests run against both drivers.

``LoopThreadClient`` runs an ``AsyncClient`` on an event loop in its own thread
(debug mode, so slow callbacks are logged). Tests call ``track()`` and the other
enqueues from their own thread (the thread-safe path) and ``flush()`` /
``shutdown()`` block on the loop's coroutines, as ``Client``'s would.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any, Optional, TypeVar

from segment_lite.async_client import AsyncClient

T = TypeVar("T")

#: A callback or task step holding the loop longer than this fails the test (asyncio debug mode). Well
#: above scheduling noise on a loaded machine, far below an import or a blocking request; the 1 ms
#: bound is measured by benchmarks/async_bench.py.
SLOW_CALLBACK_S = 0.25


class SlowCallbacks(logging.Handler):
    """Collects asyncio's debug-mode warnings of callbacks that held the loop too long."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "took" in message and "seconds" in message:
            self.records.append(message)


class LoopThreadClient:
    """An ``AsyncClient`` on a loop thread, answering ``Client``'s blocking lifecycle calls."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.set_debug(True)
        self.loop.slow_callback_duration = SLOW_CALLBACK_S
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-loop", daemon=True)
        self._thread.start()
        # Made here: the first construction imports httpx, which is not for a running loop.
        self.client = AsyncClient(*args, **kwargs)
        self._run(self._bind())

    async def _bind(self) -> None:
        self.client._pipeline._bound_loop()  # tasks start on this loop now, as on a first call inside it

    def _run(self, coroutine: Coroutine[Any, Any, T], timeout: Optional[float] = None) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def flush(self, timeout: Optional[float] = None) -> bool:
        return self._run(self.client.flush(timeout))

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        return self._run(self.client.shutdown(timeout))

    def wait_settled(self, mark: int, timeout: Optional[float] = None) -> bool:
        return self._run(self.client.wait_settled(mark, timeout))

    def join(self, timeout: Optional[float] = None) -> bool:
        return self.flush(timeout)

    def stop_loop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)
