"""Build and validate Spec messages: one function per call, one place for every field."""

from __future__ import annotations

import datetime
import itertools
import numbers
import os
import time
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
    "build_track",
    "build_view",
    "format_timestamp",
    "iso_from_epoch",
    "new_message_id",
    "now_iso",
]

LIBRARY = {"name": "segment-lite", "version": VERSION}
MAX_MESSAGE_ID_CHARS = 100

_UTC = datetime.timezone.utc
_ID_TYPES = (str, numbers.Number, uuid.UUID)

Message = dict[str, Any]

# -- messageIds ----------------------------------------------------------------
#
# ``str(uuid.uuid4())`` costs about 3 us, and its ``os.urandom(16)`` releases the
# GIL on every call, which hands the GIL to the delivery thread in the middle of
# ``track()``. Instead, one ``os.urandom`` call fetches the randomness for
# ``_IDS_PER_DRAW`` ids, which are formatted together (a few C-level slice copies)
# into one string of 36-character ids. Each call claims a slot with ``next()`` on a
# shared ``itertools.count`` (atomic) and slices its id out of the draw; a thread
# whose slot is past the current draw makes a new draw based at its slot. Ids of
# different draws come from different random bytes, and two calls never share a
# slot of one draw, so ids never repeat; they are version-4, RFC 4122 variant UUIDs
# from the OS CSPRNG, like ``uuid4()``. A forked child starts a new draw (see
# ``_reset_after_fork``).

_IDS_PER_DRAW = 256
_SET_VERSION = bytes((byte & 0x0F) | 0x40 for byte in range(256))  # byte 6: version 4
_SET_VARIANT = bytes((byte & 0x3F) | 0x80 for byte in range(256))  # byte 8: variant 10xx
_HEX_POSITIONS = [index for index in range(36) if index not in (8, 13, 18, 23)]  # the rest are "-"
_urandom = os.urandom
_slots = itertools.count()
_draw: tuple[int, str] = (-_IDS_PER_DRAW, "")  # (first slot, its ids back to back)


def _new_draw() -> str:
    raw = bytearray(_urandom(16 * _IDS_PER_DRAW))
    raw[6::16] = raw[6::16].translate(_SET_VERSION)
    raw[8::16] = raw[8::16].translate(_SET_VARIANT)
    digits = raw.hex().encode("ascii")
    ids = bytearray(b"-" * (36 * _IDS_PER_DRAW))
    for source, target in enumerate(_HEX_POSITIONS):
        ids[target::36] = digits[source::32]
    return ids.decode("ascii")


def new_message_id() -> str:
    """A fresh random messageId: a uuid4 string such as ``"3f0c1a52-8d4e-4b7a-9c1e-5d2f6a7b8c9d"``."""
    global _draw
    slot = next(_slots)
    first, ids = _draw
    offset = slot - first
    if not 0 <= offset < _IDS_PER_DRAW:
        ids = _new_draw()
        _draw = (slot, ids)
        offset = 0
    return ids[offset * 36 : offset * 36 + 36]


# -- timestamps ----------------------------------------------------------------
#
# ``datetime.now(utc).isoformat(...)`` costs about 1.5 us; the date and time to the
# second change once a second, so they are formatted once and cached, and the
# milliseconds come from a table.

_time_ns = time.time_ns
_second_prefix: tuple[int, str] = (-1, "")  # (epoch second, "YYYY-MM-DDTHH:MM:SS")
_MILLIS = [f".{millis:03d}Z" for millis in range(1000)]


def now_iso() -> str:
    """The current UTC time as ISO-8601 with milliseconds, e.g. ``2026-01-02T03:04:05.678Z``."""
    global _second_prefix
    ns = _time_ns()
    second = ns // 1_000_000_000
    cached_second, prefix = _second_prefix
    if second != cached_second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second_prefix = (second, prefix)
    return prefix + _MILLIS[ns // 1_000_000 % 1000]


def _reset_after_fork() -> None:
    # The child must not reuse the parent's random bytes: it would repeat its ids.
    global _draw, _slots
    _slots = itertools.count()
    _draw = (-_IDS_PER_DRAW, "")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


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
            try:
                moment = moment.astimezone(_UTC)
            except OverflowError:  # year 1 with a positive offset, year 9999 with a negative one
                raise ValidationError(
                    f"{path} is out of range once converted to UTC (years 1 to 9999): {value!r}", path
                ) from None
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
        message["messageId"] = new_message_id()
    else:
        mid = _id(message_id, "messageId", kind)
        if not mid or len(mid) > MAX_MESSAGE_ID_CHARS:
            raise ValidationError(
                f"{kind}: messageId must be 1 to {MAX_MESSAGE_ID_CHARS} characters, got {len(mid or '')}",
                "messageId",
            )
        message["messageId"] = mid
    if timestamp is None:
        message["timestamp"] = now_iso()
    else:
        message["timestamp"] = format_timestamp(timestamp)
    if context is None:
        message["context"] = {"library": LIBRARY}
    else:
        merged = dict(context if type(context) is dict else _dict(context, "context", kind))
        merged.setdefault("library", LIBRARY)
        message["context"] = merged
    if integrations is not None:
        message["integrations"] = _dict(integrations, "integrations", kind)
    return message


def _identity(message: Message, kind: str, user_id: Any, anonymous_id: Any) -> None:
    if anonymous_id is None and type(user_id) is str and user_id:  # the common case, checked first
        message["userId"] = user_id
        return
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
    if type(properties) is not dict:
        properties = _dict(properties, "properties", "track")
    message["properties"] = properties
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


def build_view(
    kind: str,
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
    """Build a page or screen message (``kind``): the two share every field but ``type``."""
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
