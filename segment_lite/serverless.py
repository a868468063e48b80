"""Delivery before a short-lived handler returns: the ``flush_after`` decorator for serverless functions.

A frozen AWS Lambda (or Cloud Functions) sandbox runs neither background threads
nor exit handlers between invocations, so what a handler tracked must be at the
server before the handler returns. ``flush_after`` flushes, with a bounded
timeout, after the handler, on success and on exception, and never lets
delivery change what the handler returns or raises.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar, Union, overload

from segment_lite.client import Client
from segment_lite.pipeline import flush_all, pending_all

if TYPE_CHECKING:
    from segment_lite.async_client import AsyncClient

__all__ = ["DEFAULT_FLUSH_TIMEOUT_S", "flush_after"]

#: How long ``flush_after`` waits for delivery by default, in seconds: well inside a
#: function's own timeout, long enough for a retry or two of a failed request.
DEFAULT_FLUSH_TIMEOUT_S = 2.0

log = logging.getLogger("segment")

Handler = TypeVar("Handler", bound=Callable[..., Any])
AnyClient = Union[Client, "AsyncClient"]


@overload
def flush_after(handler: Handler) -> Handler: ...


@overload
def flush_after(
    handler: None = None,
    *,
    client: Optional[AnyClient] = None,
    timeout: Optional[float] = DEFAULT_FLUSH_TIMEOUT_S,
) -> Callable[[Handler], Handler]: ...


def flush_after(
    handler: Optional[Handler] = None,
    *,
    client: Optional[AnyClient] = None,
    timeout: Optional[float] = DEFAULT_FLUSH_TIMEOUT_S,
) -> Union[Handler, Callable[[Handler], Handler]]:
    """Wrap a handler (sync or ``async def``) so what it tracked is delivered before it returns.

    Use it bare (``@flush_after``: every client of this process is flushed,
    the module functions' default client and ``AsyncClient``s on the handler's loop
    included; an ``AsyncClient`` is flushed only around an ``async def`` handler) or with options
    (``@flush_after(client=my_client, timeout=1.0)``). The flush runs after the
    handler, whether it returned or raised, and waits at most ``timeout``
    seconds (``None``: as long as delivery takes); what is not delivered by then
    stays queued and is sent by the next invocation. A delivery problem is logged
    (and counted in ``stats()``), never raised: the handler's own result or
    exception is what the caller gets.
    """

    def decorate(function: Handler) -> Handler:
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await function(*args, **kwargs)
                finally:
                    await _flush_async(client, timeout)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                result = function(*args, **kwargs)
            except BaseException:
                _flush(client, timeout)
                raise
            if inspect.iscoroutine(result):
                # An async handler that does not look like one (an object with an async
                # __call__, a partial): flush once the caller has awaited it.
                return _awaited_then_flushed(result, client, timeout)
            _flush(client, timeout)
            return result

        return wrapper  # type: ignore[return-value]

    if handler is not None:
        return decorate(handler)
    return decorate


def _flush(client: Optional[AnyClient], timeout: Optional[float]) -> None:
    if client is not None and not isinstance(client, Client):
        log.warning("flush_after: an AsyncClient is flushed only around an async def handler; not flushed")
        return
    try:
        settled = flush_all(timeout) if client is None else client.flush(timeout)
    except Exception:  # delivery must never change the handler's outcome
        log.exception("flush_after: the flush after the handler failed; the handler's result stands")
        return
    if not settled:
        log.warning(
            "flush_after: not everything was delivered within %ss; the rest stays queued for the "
            "next invocation",
            timeout,
        )


async def _awaited_then_flushed(
    coroutine: Coroutine[Any, Any, Any], client: Optional[AnyClient], timeout: Optional[float]
) -> Any:
    try:
        return await coroutine
    finally:
        await _flush_async(client, timeout)


async def _flush_async(client: Optional[AnyClient], timeout: Optional[float]) -> None:
    if not isinstance(client, Client):  # an AsyncClient, or every client: the asyncio ones first
        try:
            from segment_lite.async_pipeline import flush_all_async

            targets = None if client is None else [client._pipeline]
            settled = await flush_all_async(timeout, targets)
        except Exception:  # delivery must never change the handler's outcome
            log.exception("flush_after: the flush after the handler failed; the handler's result stands")
            return
        if client is not None:
            if not settled:
                log.warning(
                    "flush_after: not everything was delivered within %ss; the rest stays queued for the "
                    "next invocation",
                    timeout,
                )
            return
    if not _anything_queued(client):
        _flush(client, timeout)  # microseconds: no reason to leave the event loop
        return
    import asyncio

    # The flush waits on delivery threads; the event loop keeps running meanwhile.
    try:
        await asyncio.get_running_loop().run_in_executor(None, _flush, client, timeout)
    except RuntimeError:  # the loop's executor is shut down: flush on this thread instead
        _flush(client, timeout)


def _anything_queued(client: Optional[AnyClient]) -> bool:
    try:
        return (pending_all() if client is None else client.queue.pending_count()) > 0
    except Exception:  # let _flush find (and log) what is wrong
        return True
