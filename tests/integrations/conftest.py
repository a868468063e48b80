"""Fixtures for the framework integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from segment_lite.testing import RecordingClient


@pytest.fixture
def recorder() -> Iterator[RecordingClient]:
    """A RecordingClient (synchronous: a message is recorded when page() returns)."""
    client = RecordingClient()
    try:
        yield client
    finally:
        client.shutdown()
