"""Build and validate Spec messages: one function per call, one place for every field."""

from __future__ import annotations

import datetime
import numbers
import uuid
from typing import Any, Optional

from dateutil.parser import isoparse

from segment_lite.errors import ValidationError
from segment_lite.version import VERSION

__all__ = [
    "LIBRARY",
    "MAX_MESSAGE_ID_CHARS",
    "build_alias",
    "build_group",
    "build_identify",
    "build_page",
    "build_screen",
    "build_track",
    "format_timestamp",
    "iso_from_epoch",
    "new_message_id",
    "now_iso",
]

LIBRARY = {"name": "segment-lite", "version": VERSION}
MAX_MESSAGE_ID_CHARS = 100

_UTC = datetime.timezone.utc
_ID_TYPES = (str, numbers.Number, uuid.UUID)
_uuid4 = uuid.uuid4
_now = datetime.datetime.now

Message = dict[str, Any]


def new_message_id() -> str:
    """A fresh random messageId (uuid4)."""
    return str(_uuid4())


def now_iso() -> str:
    """The current UTC time as ISO-8601 with milliseconds, e.g. ``2026-01-02T03:04:05.678Z``."""
    return _now(_UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def iso_from_epoch(seconds: float) -> str:
    """Epoch seconds as ISO-8601 UTC with milliseconds."""
    return datetime.datetime.fromtimestamp(seconds, _UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def format_timestamp(value: Any, path: str = "timestamp") -> str:
    """Normalise a caller's timestamp to ISO-8601 UTC with milliseconds.

    Accepts an aware datetime (converted to UTC), a naive datetime (taken as UTC),
    a date (midnight UTC) or an ISO-8601 string (parsed with dateutil; a string
    without an offset is taken as UTC).
    """
    if isinstance(value, str):
        try:
            value = isoparse(value)
        except (ValueError, OverflowError):
            raise ValidationError(f"{path} must be an ISO-8601 date-time, got {value!r}", path) from None
    if isinstance(value, datetime.datetime):
        moment: datetime.datetime = value
        if moment.tzinfo is None or moment.tzinfo.utcoffset(moment) is None:
            moment = moment.replace(tzinfo=_UTC)
        elif moment.utcoffset():
            moment = moment.astimezone(_UTC)
        return moment.isoformat(timespec="milliseconds")[:-6] + "Z"
    if isinstance(value, datetime.date):
        return f"{value.isoformat()}T00:00:00.000Z"
    raise ValidationError(
        f"{path} must be a datetime, date or ISO-8601 string, got {type(value).__name__}", path
    )


def _id(value: Any, path: str, kind: str) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, _ID_TYPES):
        raise ValidationError(f"{kind}: {path} must be a string or number, got {type(value).__name__}", path)
    return str(value)


def _dict(value: Any, path: str, kind: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(f"{kind}: {path} must be a dict, got {type(value).__name__}", path)
    return value


def _optional_str(value: Any, path: str, kind: str) -> Optional[str]:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{kind}: {path} must be a string, got {type(value).__name__}", path)
    return value


def _common(
    message: Message,
    kind: str,
    context: Any,
    timestamp: Any,
    integrations: Any,
    message_id: Any,
) -> Message:
    """Fill the fields every message carries: messageId, timestamp, context, integrations."""
    if message_id is None:
        message["messageId"] = str(_uuid4())
    else:
        mid = _id(message_id, "messageId", kind)
        if not mid or len(mid) > MAX_MESSAGE_ID_CHARS:
            raise ValidationError(
                f"{kind}: messageId must be 1 to {MAX_MESSAGE_ID_CHARS} characters, got {len(mid or '')}",
                "messageId",
            )
        message["messageId"] = mid
    if timestamp is None:
        message["timestamp"] = _now(_UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
    else:
        message["timestamp"] = format_timestamp(timestamp)
    if context is None:
        message["context"] = {"library": LIBRARY}
    else:
        merged = dict(_dict(context, "context", kind))
        merged.setdefault("library", LIBRARY)
        message["context"] = merged
    if integrations is not None:
        message["integrations"] = _dict(integrations, "integrations", kind)
    return message


def _identity(message: Message, kind: str, user_id: Any, anonymous_id: Any) -> None:
    uid = _id(user_id, "userId", kind)
    aid = _id(anonymous_id, "anonymousId", kind)
    if not uid and not aid:
        raise ValidationError(f"{kind}: user_id or anonymous_id is required", "userId")
    if uid:
        message["userId"] = uid
    if aid:
        message["anonymousId"] = aid


def build_track(
    user_id: Any = None,
    event: Any = None,
    properties: Any = None,
    context: Any = None,
    timestamp: Any = None,
    anonymous_id: Any = None,
    integrations: Any = None,
    message_id: Any = None,
) -> Message:
    """Build a track message; raises ``ValidationError`` naming the field at fault."""
    if not event or not isinstance(event, str):
        raise ValidationError(
            f"track: event must be a non-empty string, got {type(event).__name__ if event else repr(event)}",
            "event",
        )
    message: Message = {"type": "track", "event": event}
    _identity(message, "track", user_id, anonymous_id)
    message["properties"] = _dict(properties, "properties", "track")
    return _common(message, "track", context, timestamp, integrations, message_id)


def build_identify(
    user_id: Any = None,
    traits: Any = None,
    context: Any = None,
    timestamp: Any = None,
    anonymous_id: Any = None,
    integrations: Any = None,
    message_id: Any = None,
) -> Message:
    """Build an identify message."""
    message: Message = {"type": "identify"}
    _identity(message, "identify", user_id, anonymous_id)
    message["traits"] = _dict(traits, "traits", "identify")
    return _common(message, "identify", context, timestamp, integrations, message_id)


def build_group(
    user_id: Any = None,
    group_id: Any = None,
    traits: Any = None,
    context: Any = None,
    timestamp: Any = None,
    anonymous_id: Any = None,
    integrations: Any = None,
    message_id: Any = None,
) -> Message:
    """Build a group message; ``group_id`` is required."""
    message: Message = {"type": "group"}
    gid = _id(group_id, "groupId", "group")
    if not gid:
        raise ValidationError("group: group_id is required", "groupId")
    message["groupId"] = gid
    _identity(message, "group", user_id, anonymous_id)
    message["traits"] = _dict(traits, "traits", "group")
    return _common(message, "group", context, timestamp, integrations, message_id)


def build_alias(
    previous_id: Any = None,
    user_id: Any = None,
    context: Any = None,
    timestamp: Any = None,
    integrations: Any = None,
    message_id: Any = None,
) -> Message:
    """Build an alias message; ``previous_id`` and ``user_id`` are both required."""
    pid = _id(previous_id, "previousId", "alias")
    if not pid:
        raise ValidationError("alias: previous_id is required", "previousId")
    uid = _id(user_id, "userId", "alias")
    if not uid:
        raise ValidationError("alias: user_id is required", "userId")
    message: Message = {"type": "alias", "previousId": pid, "userId": uid}
    return _common(message, "alias", context, timestamp, integrations, message_id)


def _build_view(
    kind: str,
    user_id: Any,
    category: Any,
    name: Any,
    properties: Any,
    context: Any,
    timestamp: Any,
    anonymous_id: Any,
    integrations: Any,
    message_id: Any,
) -> Message:
    message: Message = {"type": kind}
    _identity(message, kind, user_id, anonymous_id)
    view_name = _optional_str(name, "name", kind)
    if view_name is not None:
        message["name"] = view_name
    view_category = _optional_str(category, "category", kind)
    if view_category is not None:
        message["category"] = view_category
    message["properties"] = _dict(properties, "properties", kind)
    return _common(message, kind, context, timestamp, integrations, message_id)


def build_page(
    user_id: Any = None,
    category: Any = None,
    name: Any = None,
    properties: Any = None,
    context: Any = None,
    timestamp: Any = None,
    anonymous_id: Any = None,
    integrations: Any = None,
    message_id: Any = None,
) -> Message:
    """Build a page message."""
    return _build_view(
        "page",
        user_id,
        category,
        name,
        properties,
        context,
        timestamp,
        anonymous_id,
        integrations,
        message_id,
    )


def build_screen(
    user_id: Any = None,
    category: Any = None,
    name: Any = None,
    properties: Any = None,
    context: Any = None,
    timestamp: Any = None,
    anonymous_id: Any = None,
    integrations: Any = None,
    message_id: Any = None,
) -> Message:
    """Build a screen message."""
    return _build_view(
        "screen",
        user_id,
        category,
        name,
        properties,
        context,
        timestamp,
        anonymous_id,
        integrations,
        message_id,
    )
