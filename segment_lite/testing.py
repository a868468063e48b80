"""Helpers for testing code that uses segment_lite, without a server.

``RecordingClient`` is a real ``Client`` (same validation, enrichment and
encoding) whose batches are captured in memory instead of sent::

    from segment_lite.testing import recording

    def test_signup_is_tracked():
        with recording() as recorder:
            signup("user-1")          # calls segment_lite.track(...)
        [message] = recorder.find(type="track", event="Signed Up")
        assert message["userId"] == "user-1"

``RecordingAsyncClient`` does the same for ``AsyncClient`` (messages recorded
once delivered: after ``await flush()``, or as a ``*_now`` call returns); it
loads httpx, so it is imported only when asked for.

With pytest, enable the fixture once with ``pytest_plugins = ["segment_lite.testing"]``
in conftest.py and ask for ``segment_recorder``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Optional

from segment_lite._recording import Recorder
from segment_lite.client import Client
from segment_lite.retry import Clock
from segment_lite.transport import TransportResponse

if TYPE_CHECKING:
    from segment_lite._testing_async import RecordingAsyncClient

__all__ = ["FakeClock", "RecordingAsyncClient", "RecordingClient", "RecordingTransport", "recording"]


def __getattr__(name: str) -> Any:
    if name == "RecordingAsyncClient":  # loads the asyncio client (and httpx) only when asked for
        from segment_lite._testing_async import RecordingAsyncClient

        return RecordingAsyncClient
    raise AttributeError(f"module 'segment_lite.testing' has no attribute {name!r}")


class RecordingTransport:
    """A transport that answers 200 and hands each batch body to its client."""

    def __init__(self, client: RecordingClient) -> None:
        self._client = client

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> TransportResponse:
        return self._client._record(body, headers)

    def abort(self) -> None:
        """Nothing to abort: a post returns at once."""
        return None

    def close(self) -> None:
        return None


class RecordingClient(Client, Recorder):
    """A ``Client`` that records the messages it would send, exactly as they would go on the wire.

    It sends synchronously by default, so a message is in ``messages`` as soon as
    the call returns. Any ``Client`` keyword argument may be passed (for example
    ``before_send``, or ``sync_mode=False`` with ``flush()`` to exercise the queue).
    """

    def __init__(self, write_key: str = "test-write-key", **kwargs: Any) -> None:
        kwargs.setdefault("sync_mode", True)
        kwargs.setdefault("strict", True)  # so a test suite catches what production would only warn about
        kwargs.setdefault("transport", lambda: RecordingTransport(self))
        self._start_recording()
        super().__init__(write_key, **kwargs)


@contextlib.contextmanager
def recording(**client_kwargs: Any) -> Iterator[RecordingClient]:
    """Make a ``RecordingClient`` the module's default client for the duration of the block."""
    import segment_lite

    previous = segment_lite.default_client
    recorder = RecordingClient(**client_kwargs)
    segment_lite.default_client = recorder
    try:
        yield recorder
    finally:
        segment_lite.default_client = previous
        recorder.shutdown()


class FakeClock(Clock):
    """A clock that never sleeps: waits return at once and move time forward.

    ``waits`` lists every wait requested, so tests can assert a backoff schedule.
    """

    def __init__(self, start: float = 1000.0, wall_start: Optional[float] = None) -> None:
        self.now = start
        self._wall_offset = (time.time() if wall_start is None else wall_start) - start
        self.waits: list[float] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self.now

    def time(self) -> float:
        with self._lock:
            return self.now + self._wall_offset

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        with self._lock:
            self.now += seconds

    def wait(self, seconds: float, interrupt: threading.Event) -> bool:
        if interrupt.is_set():
            return False
        with self._lock:
            self.waits.append(seconds)
            self.now += max(0.0, seconds)
        return not interrupt.is_set()


try:
    import pytest
except ImportError:  # pytest is optional: the fixture exists only where it is installed
    pass
else:

    @pytest.fixture
    def segment_recorder() -> Iterator[RecordingClient]:
        """A ``RecordingClient`` installed as segment_lite's default client for one test."""
        with recording() as recorder:
            yield recorder

    __all__ += ["segment_recorder"]
