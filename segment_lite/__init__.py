"""segment_lite: a fast, loss-free, drop-in client for the Segment HTTP Tracking API.

Use it like segment-analytics-python::

    import segment_lite as analytics
    analytics.write_key = "YOUR_WRITE_KEY"
    analytics.track("user-1", "Signed Up", {"plan": "pro"})

or make a ``Client`` of your own. Module-level settings are read when the
default client is first used.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any, Optional

from segment_lite.client import DEFAULT_SPOOL_MAX_BYTES as _DEFAULT_SPOOL_MAX_BYTES
from segment_lite.client import MAX_MESSAGE_BYTES, Client, Result
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
from segment_lite.pipeline import FlushResult
from segment_lite.retry import Clock, RetryPolicy
from segment_lite.serverless import flush_after
from segment_lite.transport import DEFAULT_HOST, EU_HOST, Transport, TransportError, TransportResponse
from segment_lite.version import VERSION

if _TYPE_CHECKING:
    from segment_lite.async_client import AsyncClient

__version__ = VERSION


def __getattr__(name: str) -> Any:
    # The asyncio client (and httpx) load only when asked for.
    if name == "AsyncClient":
        from segment_lite.async_client import AsyncClient

        return AsyncClient
    raise AttributeError(f"module 'segment_lite' has no attribute {name!r}")


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

# Settings, as in segment.analytics: read when the default client is created.
write_key: Optional[str] = Client.DefaultConfig.write_key
host: Optional[str] = Client.DefaultConfig.host
on_error: Optional[OnError] = Client.DefaultConfig.on_error
debug: bool = Client.DefaultConfig.debug
log_handler: Optional[logging.Handler] = Client.DefaultConfig.log_handler
send: bool = Client.DefaultConfig.send
sync_mode: bool = Client.DefaultConfig.sync_mode
max_queue_size: int = Client.DefaultConfig.max_queue_size
gzip: bool = Client.DefaultConfig.gzip
timeout: float = Client.DefaultConfig.timeout
max_retries: int = Client.DefaultConfig.max_retries
oauth_client_id: Optional[str] = Client.DefaultConfig.oauth_client_id
oauth_client_key: Optional[str] = Client.DefaultConfig.oauth_client_key
oauth_key_id: Optional[str] = Client.DefaultConfig.oauth_key_id
oauth_auth_server: str = Client.DefaultConfig.oauth_auth_server
oauth_scope: str = Client.DefaultConfig.oauth_scope
# segment_lite's own module settings.
region: Optional[str] = None
on_drop: Optional[OnDrop] = None
spool_dir: Optional[str] = None
spool_max_bytes: int = _DEFAULT_SPOOL_MAX_BYTES
spool_fsync: str = "batch"
tracking_plan: Any = None  # a plan file path, a parsed plan or a segment_lite.plan.TrackingPlan
on_violation: str = "send"
on_unplanned: str = "send"
tag_violations: bool = False
strict: bool = False
flush_at_exit: bool = True

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
            default_client = Client(
                write_key,
                host=host,
                debug=debug,
                max_queue_size=max_queue_size,
                send=send,
                on_error=on_error,
                gzip=gzip,
                max_retries=max_retries,
                sync_mode=sync_mode,
                timeout=timeout,
                log_handler=log_handler,
                oauth_client_id=oauth_client_id,
                oauth_client_key=oauth_client_key,
                oauth_key_id=oauth_key_id,
                oauth_auth_server=oauth_auth_server,
                oauth_scope=oauth_scope,
                region=region,
                on_drop=on_drop,
                spool_dir=spool_dir,
                spool_max_bytes=spool_max_bytes,
                spool_fsync=spool_fsync,
                tracking_plan=tracking_plan,
                on_violation=on_violation,
                on_unplanned=on_unplanned,
                tag_violations=tag_violations,
                strict=strict,
                flush_at_exit=flush_at_exit,
            )
        return default_client


# The six calls, with Client's signatures so type checkers check calls through the module.


def identify(
    user_id: Any = None,
    traits: Optional[Mapping[str, Any]] = None,
    context: Optional[Mapping[str, Any]] = None,
    timestamp: Any = None,
    anonymous_id: Any = None,
    integrations: Optional[Mapping[str, Any]] = None,
    message_id: Optional[str] = None,
) -> Result:
    """Send an identify call through the default client (see ``Client.identify``)."""
    return _default().identify(user_id, traits, context, timestamp, anonymous_id, integrations, message_id)


def track(
    user_id: Any = None,
    event: Optional[str] = None,
    properties: Optional[Mapping[str, Any]] = None,
    context: Optional[Mapping[str, Any]] = None,
    timestamp: Any = None,
    anonymous_id: Any = None,
    integrations: Optional[Mapping[str, Any]] = None,
    message_id: Optional[str] = None,
) -> Result:
    """Send a track call through the default client (see ``Client.track``)."""
    return _default().track(
        user_id, event, properties, context, timestamp, anonymous_id, integrations, message_id
    )


def alias(
    previous_id: Any = None,
    user_id: Any = None,
    context: Optional[Mapping[str, Any]] = None,
    timestamp: Any = None,
    integrations: Optional[Mapping[str, Any]] = None,
    message_id: Optional[str] = None,
) -> Result:
    """Send an alias call through the default client (see ``Client.alias``)."""
    return _default().alias(previous_id, user_id, context, timestamp, integrations, message_id)


def group(
    user_id: Any = None,
    group_id: Any = None,
    traits: Optional[Mapping[str, Any]] = None,
    context: Optional[Mapping[str, Any]] = None,
    timestamp: Any = None,
    anonymous_id: Any = None,
    integrations: Optional[Mapping[str, Any]] = None,
    message_id: Optional[str] = None,
) -> Result:
    """Send a group call through the default client (see ``Client.group``)."""
    return _default().group(
        user_id, group_id, traits, context, timestamp, anonymous_id, integrations, message_id
    )


def page(
    user_id: Any = None,
    category: Optional[str] = None,
    name: Optional[str] = None,
    properties: Optional[Mapping[str, Any]] = None,
    context: Optional[Mapping[str, Any]] = None,
    timestamp: Any = None,
    anonymous_id: Any = None,
    integrations: Optional[Mapping[str, Any]] = None,
    message_id: Optional[str] = None,
) -> Result:
    """Send a page call through the default client (see ``Client.page``)."""
    return _default().page(
        user_id, category, name, properties, context, timestamp, anonymous_id, integrations, message_id
    )


def screen(
    user_id: Any = None,
    category: Optional[str] = None,
    name: Optional[str] = None,
    properties: Optional[Mapping[str, Any]] = None,
    context: Optional[Mapping[str, Any]] = None,
    timestamp: Any = None,
    anonymous_id: Any = None,
    integrations: Optional[Mapping[str, Any]] = None,
    message_id: Optional[str] = None,
) -> Result:
    """Send a screen call through the default client (see ``Client.screen``)."""
    return _default().screen(
        user_id, category, name, properties, context, timestamp, anonymous_id, integrations, message_id
    )


def flush(timeout: Optional[float] = None) -> bool:
    """Deliver what the default client has queued; see ``Client.flush``."""
    return _default().flush(timeout)


def join(timeout: Optional[float] = None) -> bool:
    """Stop the default client's threads once the queue is sent; see ``Client.join``."""
    return _default().join(timeout)


def shutdown(timeout: Optional[float] = None) -> bool:
    """Deliver what is queued and shut the default client down; see ``Client.shutdown``."""
    return _default().shutdown(timeout)


def stats() -> dict[str, Any]:
    """Counters of the default client; see ``Client.stats``."""
    return _default().stats()
