"""Metrics bridges: a client's ``stats()`` as Prometheus or OpenTelemetry metrics (optional extras).

Import a bridge from its module so only its library is imported:
``segment_lite.metrics.prometheus`` (extra ``[prometheus]``) or
``segment_lite.metrics.otel`` (extra ``[otel]``). See docs/reliability.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["resolve_client"]


def resolve_client(client: Any) -> Any:
    """``client``, or for None the ``segment_lite`` module's default client (None if not created yet)."""
    if client is not None:
        return client
    import segment_lite

    return segment_lite.default_client
