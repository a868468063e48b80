"""Typed outcomes of messages (delivered, retried, dropped), handed to every subscriber as they happen.

The ledger makes one :class:`Outcome` for each thing that happens to messages and
hands it, in order, to its subscribers: its own counters, the delivery observers
(``segment_lite.observe``), the user hooks (``on_error``/``on_drop``, which are rate
limited and capped) and whatever subscribed with ``Client.add_outcome_subscriber``
(the importer does, to learn which of its rows were rejected or lost).

A subscriber is called on the thread the outcome happened on (a delivery thread,
or the caller's for a refusal at the call), before the settled messages count as
done, and is not rate limited: it must be quick and must not call the client.
Its exceptions are counted as ``stats()["hook_errors"]`` and logged, never raised.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

__all__ = ["Delivered", "Dropped", "Item", "Outcome", "OutcomeSubscriber", "Retried", "as_message"]

#: A message as an outcome carries it: its encoded bytes (from the queue), or the
#: message dict when it was refused before it was encoded.
Item = Union[bytes, dict[str, Any]]


@dataclass(frozen=True)
class Delivered:
    """The server accepted ``items`` (their encoded bytes; empty when only counted)."""

    count: int
    items: Sequence[Item] = ()


@dataclass(frozen=True)
class Retried:
    """A request failed in a way that is retried, and is about to be."""


@dataclass(frozen=True)
class Dropped:
    """``count`` messages were lost for ``reason`` (one of ``segment_lite.ledger.DROP_REASONS``).

    ``items`` are the messages, every one of them (a refusal that kept no
    message, such as an unreadable spool record, has none). ``status`` is the
    server's answer for a ``rejected`` batch. ``report`` is False when the error
    is raised to the caller instead of reported (sync mode).
    """

    reason: str
    error: BaseException
    count: int
    items: Sequence[Item] = ()
    status: Optional[int] = None
    report: bool = True


Outcome = Union[Delivered, Retried, Dropped]
OutcomeSubscriber = Callable[[Outcome], Any]


def as_message(item: Item) -> Any:
    """The message ``item`` is, as a dict (an encoded one decoded; one that cannot be: ``{"raw": text}``)."""
    if isinstance(item, bytes):
        try:
            return json.loads(item)
        except (ValueError, RecursionError):  # RecursionError: nested past any limit (an old spool)
            return {"raw": item.decode("utf-8", "replace")}
    return item
