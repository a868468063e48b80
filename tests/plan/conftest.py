"""Fixtures for the tracking-plan tests: a collector database filled with the demo session."""

from __future__ import annotations

from pathlib import Path

import pytest

import segment_lite
from segment_lite.collector import Collector
from segment_lite.collector.demo import EXPECTED_MESSAGES, _send_session

DEMO_SESSIONS = 3


def fill_with_demo(db: str, sessions: int = DEMO_SESSIONS) -> int:
    """Send ``sessions`` demo sessions through a real client to a collector storing in ``db``."""
    with Collector(db=db) as collector:
        client = segment_lite.Client("plan-test-key", host=collector.url)
        try:
            for index in range(sessions):
                _send_session(client, f"user-{index}", f"anon-{index}")
            assert client.flush(timeout=10)
        finally:
            client.shutdown(timeout=5)
        expected = EXPECTED_MESSAGES * sessions
        assert collector.wait_for_messages(expected, timeout=10)
    return expected


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A collector database holding the demo session, sent three times."""
    path = tmp_path_factory.mktemp("demo") / "events.db"
    fill_with_demo(str(path))
    return str(path)


@pytest.fixture
def plan_dir(tmp_path: Path) -> Path:
    return tmp_path
