"""Shared fixtures: a real local collector and clients pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Callable

import pytest

import segment_lite
from segment_lite.collector import Collector
from segment_lite.options import MODULE_SETTINGS

WRITE_KEY = "test-secret-write-key-1234"


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A Tracking API server on an ephemeral loopback port."""
    with Collector() as server:
        yield server


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module with ``DELIVERY_DRIVERS`` runs each test that makes clients once per driver.

    A test marked ``threads_only`` checks what only the threaded driver has.
    """
    drivers = getattr(metafunc.module, "DELIVERY_DRIVERS", None)
    if drivers and "make_client" in metafunc.fixturenames:
        if metafunc.definition.get_closest_marker("threads_only") is None:
            metafunc.parametrize("driver", drivers, indirect=True)


@pytest.fixture
def driver(request: pytest.FixtureRequest) -> str:
    """Which driver delivers for ``make_client``: ``threads`` (``Client``) or ``asyncio`` (``AsyncClient``)."""
    return str(getattr(request, "param", "threads"))


@pytest.fixture
def make_client(collector: Collector, driver: str) -> Iterator[Callable[..., segment_lite.Client]]:
    """Build clients aimed at ``collector``; each is shut down (bounded) after the test.

    With the ``asyncio`` driver they are ``AsyncClient``s on a loop thread (tests/async_driver.py),
    answering the same calls; the loop must log no slow callback.
    """
    clients: list[Any] = []
    slow = None
    if driver == "asyncio":
        import logging

        from tests.async_driver import SlowCallbacks

        slow = SlowCallbacks()
        logging.getLogger("asyncio").addHandler(slow)

    def make(**kwargs: Any) -> segment_lite.Client:
        kwargs.setdefault("host", collector.url)
        kwargs.setdefault("shutdown_timeout", 2.0)
        write_key = kwargs.pop("write_key", WRITE_KEY)
        if driver == "asyncio":
            from tests.async_driver import LoopThreadClient

            client: Any = LoopThreadClient(write_key, **kwargs)
        else:
            client = segment_lite.Client(write_key, **kwargs)
        clients.append(client)
        return client  # type: ignore[no-any-return]

    yield make
    for client in clients:
        client.shutdown(timeout=2.0)
        if driver == "asyncio":
            client.stop_loop()
    if slow is not None:
        import logging

        logging.getLogger("asyncio").removeHandler(slow)
        assert not slow.records, f"the event loop was held too long: {slow.records}"


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


_MODULE_SETTINGS = (*MODULE_SETTINGS, "default_client")
