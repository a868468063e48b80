"""Celery integration: carry the sender's request context into tasks; flush the client when workers exit."""

from __future__ import annotations

import importlib
import logging
from typing import Any, Callable, Optional

from segment_lite.errors import raise_if_framework_missing
from segment_lite.scope import RequestContext, active, context

try:
    from celery import signals
except ImportError as exc:
    raise_if_framework_missing(exc, integration=__name__, framework="celery", extra="celery")
    raise

__all__ = ["CONTEXT_HEADER", "CelerySegment", "setup_celery"]

#: The task message header that carries the sender's ``segment_lite.context`` values.
CONTEXT_HEADER = "segment_lite_context"

logger = logging.getLogger("segment_lite.integrations")


class CelerySegment:
    """The connected signal handlers; :meth:`disconnect` undoes :func:`setup_celery`.

    ``worker_process_shutdown`` fires in each prefork child as it exits (after
    ``maxtasksperchild``, a pool shrink or worker shutdown); ``worker_shutdown`` fires in
    the main worker process, where tasks of the ``solo``/``threads`` pools run. Both call
    ``client.shutdown(timeout)``, which flushes what the process queued, within the timeout.
    The client rebuilds its queue and threads itself in forked children, so nothing is
    needed at ``worker_process_init``.

    With ``propagate_context`` (the default), a task sent inside a ``segment_lite.context``
    carries its values in the ``segment_lite_context`` message header
    (``before_task_publish``), and the worker runs the task inside them (from
    ``task_prerun`` to ``task_postrun``), as a fresh context. Both sides need
    ``setup_celery``: the code that sends tasks and the worker.
    """

    def __init__(
        self, client: Any = None, timeout: Optional[float] = 5.0, *, propagate_context: bool = True
    ) -> None:
        self.client = client
        self.timeout = timeout
        self.errors = 0
        self.shutdowns = 0
        self.propagate_context = propagate_context
        self._running: dict[str, RequestContext] = {}
        uid = f"segment_lite.integrations.celery:{id(self)}"
        self._process_uid = uid + ":process"
        self._worker_uid = uid + ":worker"
        self._context_uid = uid + ":context"
        signals.worker_process_shutdown.connect(self._on_shutdown, weak=False, dispatch_uid=self._process_uid)
        signals.worker_shutdown.connect(self._on_shutdown, weak=False, dispatch_uid=self._worker_uid)
        if propagate_context:
            signals.before_task_publish.connect(self._on_publish, weak=False, dispatch_uid=self._context_uid)
            signals.task_prerun.connect(self._on_prerun, weak=False, dispatch_uid=self._context_uid)
            signals.task_postrun.connect(self._on_postrun, weak=False, dispatch_uid=self._context_uid)

    def _on_publish(self, headers: Optional[dict[str, Any]] = None, **kwargs: Any) -> None:
        values = active()
        if values is None or headers is None:
            return
        try:
            headers[CONTEXT_HEADER] = values.as_dict()
        except Exception:
            self.errors += 1
            logger.exception("segment_lite: putting the request context in a task's headers failed")

    def _on_prerun(self, task_id: Optional[str] = None, task: Any = None, **kwargs: Any) -> None:
        try:
            request = getattr(task, "request", None)
            carried = getattr(request, CONTEXT_HEADER, None) if request is not None else None
            if carried is None and request is not None:
                carried = (getattr(request, "headers", None) or {}).get(CONTEXT_HEADER)
            if not isinstance(carried, dict) or task_id is None:
                return
            scope = context(**carried, fresh=True)
            scope.__enter__()
            self._running[task_id] = scope
        except Exception:
            self.errors += 1
            logger.exception("segment_lite: restoring the request context of a task failed")

    def _on_postrun(self, task_id: Optional[str] = None, **kwargs: Any) -> None:
        scope = self._running.pop(task_id, None) if task_id is not None else None
        if scope is None:
            return
        try:
            scope.__exit__(None, None, None)
        except (ValueError, RuntimeError):  # entered elsewhere, or an inner block left open
            pass

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
        if self.propagate_context:
            signals.before_task_publish.disconnect(self._on_publish, dispatch_uid=self._context_uid)
            signals.task_prerun.disconnect(self._on_prerun, dispatch_uid=self._context_uid)
            signals.task_postrun.disconnect(self._on_postrun, dispatch_uid=self._context_uid)


def setup_celery(
    app: Any = None, *, client: Any = None, timeout: Optional[float] = 5.0, propagate_context: bool = True
) -> CelerySegment:
    """Carry request contexts into tasks; flush/shut down ``client`` (default: the module) when workers exit.

    Call it where the Celery app is defined (imported by senders and workers alike).
    ``app`` is accepted for symmetry with other integrations and is currently unused:
    Celery's signals are process-wide. ``timeout`` (seconds, None to wait until done)
    bounds how long exit may wait. ``propagate_context=False`` leaves task headers alone.
    """
    del app
    return CelerySegment(client=client, timeout=timeout, propagate_context=propagate_context)
