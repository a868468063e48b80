"""Fixtures for the disk spool tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    """A spool root no process has used yet."""
    return tmp_path / "spool"
