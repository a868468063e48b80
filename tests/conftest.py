"""Shared fixtures: a real local collector and clients pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Callable

import pytest

import segment_lite
from segment_lite.collector import Collector

WRITE_KEY = "test-secret-write-key-1234"


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A Tracking API server on an ephemeral loopback port."""
    with Collector() as server:
        yield server


@pytest.fixture
def make_client(collector: Collector) -> Iterator[Callable[..., segment_lite.Client]]:
    """Build clients aimed at ``collector``; each is shut down (bounded) after the test."""
    clients: list[segment_lite.Client] = []

    def make(**kwargs: Any) -> segment_lite.Client:
        kwargs.setdefault("host", collector.url)
        kwargs.setdefault("shutdown_timeout", 2.0)
        client = segment_lite.Client(kwargs.pop("write_key", WRITE_KEY), **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.shutdown(timeout=2.0)


@pytest.fixture(autouse=True)
def _restore_encoder_choice() -> Iterator[None]:
    """In-process benchmark runs force the standard-library encoder; later tests get theirs back."""
    import segment_lite.encoding

    saved = segment_lite.encoding.HAVE_ORJSON
    yield
    segment_lite.encoding.HAVE_ORJSON = saved


@pytest.fixture(autouse=True)
def _reset_module_settings() -> Iterator[None]:
    """Tests that touch module-level settings leave them as they found them."""
    saved = {name: getattr(segment_lite, name) for name in _MODULE_SETTINGS}
    yield
    client = segment_lite.default_client
    if client is not None:
        client.shutdown(timeout=2.0)
    for name, value in saved.items():
        setattr(segment_lite, name, value)


_MODULE_SETTINGS = (
    "write_key",
    "host",
    "on_error",
    "debug",
    "log_handler",
    "send",
    "sync_mode",
    "max_queue_size",
    "gzip",
    "timeout",
    "max_retries",
    "region",
    "on_drop",
    "spool_dir",
    "spool_max_bytes",
    "spool_fsync",
    "tracking_plan",
    "on_violation",
    "on_unplanned",
    "tag_violations",
    "strict",
    "flush_at_exit",
    "defaults",
    "consent",
    "consent_categories",
    "on_denied",
    "observers",
    "default_client",
)
