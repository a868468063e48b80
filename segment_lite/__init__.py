"""segment_lite: a fast, loss-free, drop-in client for the Segment HTTP Tracking API.

Use it like segment-analytics-python::

    import segment_lite as analytics
    analytics.write_key = "YOUR_WRITE_KEY"
    analytics.track("user-1", "Signed Up", {"plan": "pro"})

or make a ``Client`` of your own. Module-level settings are read when the
default client is first used.
"""

from __future__ import annotations

import inspect
import threading
import typing
from typing import Any, Optional

from segment_lite.client import Client, Result
from segment_lite.errors import (
    APIError,
    EncodeError,
    FilteredError,
    MessageTooLargeError,
    NestingTooDeepError,
    PlanViolationError,
    QueueFullError,
    RetriesExhaustedError,
    SegmentLiteError,
    ShutdownError,
    SpoolCorruptError,
    SpoolError,
    SpoolWriteError,
    ValidationError,
)
from segment_lite.ledger import OnDrop, OnError
from segment_lite.limits import MAX_MESSAGE_BYTES
from segment_lite.options import MODULE_SETTINGS as _MODULE_SETTINGS
from segment_lite.options import ClientOptions as _ClientOptions
from segment_lite.pipeline import FlushResult
from segment_lite.retry import Clock, RetryPolicy
from segment_lite.scope import context
from segment_lite.serverless import flush_after
from segment_lite.transport import DEFAULT_HOST, EU_HOST, Transport, TransportError, TransportResponse
from segment_lite.version import VERSION

if typing.TYPE_CHECKING:  # typing's own names stay out of this module's public namespace
    from collections.abc import Callable

    from typing_extensions import Concatenate, ParamSpec

    from segment_lite.async_client import AsyncClient

    _P = ParamSpec("_P")
_R = typing.TypeVar("_R")

__version__ = VERSION


__all__ = [
    "DEFAULT_HOST",
    "EU_HOST",
    "MAX_MESSAGE_BYTES",
    "VERSION",
    "APIError",
    "AsyncClient",
    "Client",
    "Clock",
    "EncodeError",
    "FilteredError",
    "FlushResult",
    "MessageTooLargeError",
    "NestingTooDeepError",
    "OnDrop",
    "OnError",
    "PlanViolationError",
    "QueueFullError",
    "Result",
    "RetriesExhaustedError",
    "RetryPolicy",
    "SegmentLiteError",
    "ShutdownError",
    "SpoolCorruptError",
    "SpoolError",
    "SpoolWriteError",
    "Transport",
    "TransportError",
    "TransportResponse",
    "ValidationError",
    "alias",
    "context",
    "flush",
    "flush_after",
    "group",
    "identify",
    "join",
    "page",
    "screen",
    "shutdown",
    "stats",
    "track",
]

# Settings, as in segment.analytics (write_key, host, ...) and segment_lite's own (spool_dir, ...): one
# for each ClientOptions field marked "module", with its default; read when the default client is made.
globals().update({_name: getattr(_ClientOptions, _name) for _name in _MODULE_SETTINGS})

default_client: Optional[Client] = None


_default_lock = threading.Lock()


def _default() -> Client:
    """The default client, made from the module settings on first use (once, whatever the threads)."""
    global default_client
    client = default_client
    if client is not None:
        return client
    with _default_lock:
        if default_client is None:
            settings = globals()
            default_client = Client(**{name: settings[name] for name in _MODULE_SETTINGS})
        return default_client


def __getattr__(name: str) -> Any:
    """``AsyncClient``, loaded (with httpx) only when asked for.

    Also for type checkers: the module settings above are made at import, unseen by them.
    """
    if name == "AsyncClient":
        from segment_lite.async_client import AsyncClient

        return AsyncClient
    raise AttributeError(f"module 'segment_lite' has no attribute {name!r}")


def _on_default_client(method: Callable[Concatenate[Client, _P], _R]) -> Callable[_P, _R]:
    """The module function calling ``method`` on the default client, with its signature for type checkers."""
    name = method.__name__

    def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        return getattr(_default(), name)(*args, **kwargs)  # type: ignore[no-any-return]

    call.__name__ = call.__qualname__ = name
    # help(), inspect and typing.get_type_hints see the method's signature, without self.
    call.__wrapped__, call.__annotations__ = method, method.__annotations__  # type: ignore[attr-defined]
    signature = inspect.signature(method)
    call.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])  # type: ignore[attr-defined]
    call.__doc__ = f"``Client.{name}`` on the default client: {(method.__doc__ or '').splitlines()[0]}"
    return call


identify = _on_default_client(Client.identify)
track = _on_default_client(Client.track)
alias = _on_default_client(Client.alias)
group = _on_default_client(Client.group)
page = _on_default_client(Client.page)
screen = _on_default_client(Client.screen)
flush = _on_default_client(Client.flush)
join = _on_default_client(Client.join)
shutdown = _on_default_client(Client.shutdown)
stats = _on_default_client(Client.stats)
