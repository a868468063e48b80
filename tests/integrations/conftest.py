"""Fixtures for the framework integration tests."""

from __future__ import annotations

import logging
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


@pytest.fixture(autouse=True)
def _restore_integrations_logger() -> Iterator[None]:
    """The ``debug`` option turns the integrations' logger up; no test leaves it so for the next."""
    logger = logging.getLogger("segment_lite.integrations")
    level, handlers = logger.level, list(logger.handlers)
    yield
    logger.setLevel(level)
    logger.handlers[:] = handlers
