"""Fixtures for the collector tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from segment_lite.collector import Collector


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A collector on a free loopback port with a private temporary database."""
    with Collector() as c:
        yield c
