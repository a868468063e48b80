"""Celery integration: flush and shut the client down when worker processes exit."""

from __future__ import annotations

import importlib
import logging
from typing import Any, Callable, Optional

from segment_lite.integrations._framework import raise_if_framework_missing

try:
    from celery import signals
except ImportError as exc:
    raise_if_framework_missing(exc, integration=__name__, framework="celery", extra="celery")
    raise

__all__ = ["CelerySegment", "setup_celery"]

logger = logging.getLogger("segment_lite.integrations")


class CelerySegment:
    """The connected signal handlers; :meth:`disconnect` undoes :func:`setup_celery`.

    ``worker_process_shutdown`` fires in each prefork child as it exits (after
    ``maxtasksperchild``, a pool shrink or worker shutdown); ``worker_shutdown`` fires in
    the main worker process, where tasks of the ``solo``/``threads`` pools run. Both call
    ``client.shutdown(timeout)``, which flushes what the process queued, within the timeout.
    The client rebuilds its queue and threads itself in forked children, so nothing is
    needed at ``worker_process_init``.
    """

    def __init__(self, client: Any = None, timeout: Optional[float] = 5.0) -> None:
        self.client = client
        self.timeout = timeout
        self.errors = 0
        self.shutdowns = 0
        uid = f"segment_lite.integrations.celery:{id(self)}"
        self._process_uid = uid + ":process"
        self._worker_uid = uid + ":worker"
        signals.worker_process_shutdown.connect(self._on_shutdown, weak=False, dispatch_uid=self._process_uid)
        signals.worker_shutdown.connect(self._on_shutdown, weak=False, dispatch_uid=self._worker_uid)

    def _client(self) -> Any:
        return self.client if self.client is not None else importlib.import_module("segment_lite")

    def _on_shutdown(self, *args: Any, **kwargs: Any) -> None:
        try:
            shutdown: Callable[..., Any] = self._client().shutdown
            shutdown(timeout=self.timeout)
            self.shutdowns += 1
        except Exception:
            self.errors += 1
            logger.exception("segment_lite: flushing the client at Celery worker shutdown failed")

    def disconnect(self) -> None:
        """Disconnect both signal handlers."""
        signals.worker_process_shutdown.disconnect(self._on_shutdown, dispatch_uid=self._process_uid)
        signals.worker_shutdown.disconnect(self._on_shutdown, dispatch_uid=self._worker_uid)


def setup_celery(app: Any = None, *, client: Any = None, timeout: Optional[float] = 5.0) -> CelerySegment:
    """Flush/shut down ``client`` (default: the ``segment_lite`` module) when workers exit.

    Call it where the Celery app is defined. ``app`` is accepted for symmetry with other
    integrations and is currently unused: Celery's worker signals are process-wide.
    ``timeout`` (seconds, None to wait until done) bounds how long exit may wait.
    """
    del app
    return CelerySegment(client=client, timeout=timeout)
