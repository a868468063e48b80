"""Shared fixtures: a real local collector and clients pointed at it; no test reaches beyond loopback."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

import segment_lite
from segment_lite.collector import Collector
from segment_lite.options import MODULE_SETTINGS

WRITE_KEY = "test-secret-write-key-1234"

# -- the network guard: connections and lookups beyond loopback fail the test that made them --

#: network_guard.py and the sitecustomize.py that installs it in every Python the tests start.
GUARD_DIR = str(Path(__file__).resolve().parent / "netguard")


def _load_network_guard() -> Any:
    # Once per process: tests that import this file as tests.conftest must not make a second guard.
    loaded = sys.modules.get("network_guard")
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(
        "network_guard", os.path.join(GUARD_DIR, "network_guard.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["network_guard"] = module
    spec.loader.exec_module(module)
    return module


network_guard = _load_network_guard()


class RefusalLog:
    """The guard's log of refused attempts, shared by this process and its children, read per test."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._offset = 0
        #: Refusals made between tests (a thread outliving its test, say): reported at the session's end.
        self.between_tests: list[str] = []

    def take(self) -> list[str]:
        """The refusals logged since the last take (so a test that expects some can claim them)."""
        with open(self.path, "rb") as log:
            log.seek(self._offset)
            new = log.read()
        self._offset += len(new)
        return new.decode("utf-8", "replace").splitlines()


def _with_guard(env: Any, log_path: str) -> dict[str, str]:
    guarded = dict(env)
    guarded[network_guard.LOG_ENV] = log_path
    paths = [p for p in guarded.get("PYTHONPATH", "").split(os.pathsep) if p and p != GUARD_DIR]
    guarded["PYTHONPATH"] = os.pathsep.join([*paths, GUARD_DIR])
    return guarded


@pytest.fixture(scope="session", autouse=True)
def _network_guard_session() -> Iterator[RefusalLog]:
    """Installs the guard here and, through PYTHONPATH, in child Pythons, even those given their own env."""
    log_dir = tempfile.mkdtemp(prefix="segment-lite-netguard-")
    log_path = os.path.join(log_dir, "refused.log")
    open(log_path, "w").close()
    saved_environ = {name: os.environ.get(name) for name in ("PYTHONPATH", network_guard.LOG_ENV)}
    os.environ.update(_with_guard(os.environ, log_path))
    original_popen_init = subprocess.Popen.__init__

    def popen_init(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
        if kwargs.get("env") is not None:  # tests often pass env=dict(os.environ, PYTHONPATH=ROOT)
            kwargs["env"] = _with_guard(kwargs["env"], log_path)
        original_popen_init(self, *args, **kwargs)

    subprocess.Popen.__init__ = popen_init  # type: ignore[method-assign]
    network_guard.install(log_path)
    log = RefusalLog(log_path)
    try:
        yield log
        log.between_tests += log.take()
        if log.between_tests:
            pytest.fail("between tests:\n" + "\n".join(log.between_tests), pytrace=False)
    finally:
        network_guard.uninstall()
        subprocess.Popen.__init__ = original_popen_init  # type: ignore[method-assign]
        for name, value in saved_environ.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(log_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_network_beyond_loopback(_network_guard_session: RefusalLog) -> Iterator[None]:
    """Fails the test if it (or a process it started) tried a non-loopback connection or lookup."""
    _network_guard_session.between_tests += _network_guard_session.take()
    yield
    refused = _network_guard_session.take()
    if refused:
        pytest.fail("\n".join(refused), pytrace=False)


@pytest.fixture
def network_refusals(_network_guard_session: RefusalLog) -> RefusalLog:
    """For tests of the guard itself: ``take()`` claims the refusals they caused on purpose."""
    return _network_guard_session


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
