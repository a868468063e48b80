"""Stored events as a fixed-width text table, for ``segment-lite events``, ``tail`` and ``demo``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from segment_lite.collector.text import printable

if TYPE_CHECKING:
    from segment_lite.collector.store import StoredEvent

__all__ = ["clip", "format_row", "format_table", "format_violations", "header"]

_COLUMNS = (("RECEIVED AT", 24), ("TYPE", 8), ("USER", 18), ("EVENT / DETAIL", 30), ("MESSAGE ID", 36))


def _detail(message: dict[str, Any]) -> str:
    kind = message.get("type")
    if kind == "track":
        return str(message.get("event", ""))
    if kind in ("page", "screen"):
        parts = [str(message[k]) for k in ("category", "name") if message.get(k)]
        if not parts and kind == "page":
            properties = message.get("properties")
            path = properties.get("path") if isinstance(properties, dict) else None
            return str(path) if path else ""
        return " / ".join(parts)
    if kind == "group":
        return f"groupId={message.get('groupId')}"
    if kind == "alias":
        return f"previousId={message.get('previousId')}"
    traits = message.get("traits")
    if isinstance(traits, dict) and traits:
        return "traits: " + ", ".join(sorted(str(k) for k in traits))
    return ""


def _user(message: dict[str, Any]) -> str:
    if message.get("userId") not in (None, ""):
        return str(message["userId"])
    if message.get("anonymousId") not in (None, ""):
        return f"anon:{message['anonymousId']}"
    return ""


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters with a trailing ``…``, at a word boundary when there is one."""
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    boundary = cut.rfind(" ")
    if text[width - 1] != " " and boundary > 0:
        cut = cut[:boundary]
    return cut.rstrip(" ,;/") + "…"


def format_row(event: StoredEvent) -> str:
    """One stored event as a fixed-width table row; control characters in the data are shown escaped."""
    m = event.message
    cells = (event.received_at, event.type, _user(m), _detail(m), event.message_id)
    return "  ".join(clip(printable(c), w).ljust(w) for c, (_, w) in zip(cells, _COLUMNS)).rstrip()


def header() -> str:
    """The table's header line."""
    return "  ".join(name.ljust(w) for name, w in _COLUMNS).rstrip()


def format_table(events: list[StoredEvent]) -> str:
    """Stored events as a readable table with a header line."""
    return "\n".join([header(), *(format_row(e) for e in events)])


def format_violations(event: StoredEvent) -> list[str]:
    """The tracking-plan violations recorded in the event, one indented ``!`` line each."""
    lines = []
    for violation in event.violations:
        path = printable(str(violation.get("path") or "(message)"))
        text = printable(str(violation.get("message", "")))
        rule = printable(str(violation.get("rule", "")))
        lines.append(f"    ! {path}: {text} [{rule}]")
    return lines
