"""Build and validate Spec messages: one function per call, one place for every field."""

from __future__ import annotations

import itertools
import numbers
import os
import uuid
from collections.abc import Mapping
from typing import Any, Optional

from segment_lite.after_fork import on_fork_in_child
from segment_lite.errors import ValidationError, safe_repr
from segment_lite.limits import MAX_MESSAGE_ID_CHARS
from segment_lite.timestamps import format_timestamp, now_iso
from segment_lite.version import VERSION

__all__ = [
    "CALLER_FIELDS",
    "LIBRARY",
    "build_alias",
    "build_group",
    "build_identify",
    "build_track",
    "build_view",
    "new_message_id",
    "now_iso",
]

LIBRARY = {"name": "segment-lite", "version": VERSION}
#: The fields where the builders below put the caller's objects (properties and
#: traits as given, copies of context and integrations). Every other value of a
#: message they build is a str or None, and every key of it a str: so checking
#: the shape of a built message (``shape.is_plain``) needs to look only here.
CALLER_FIELDS = ("properties", "traits", "context", "integrations")

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


def _reset_after_fork() -> None:
    # The child must not reuse the parent's random bytes: it would repeat its ids.
    global _draw, _slots
    _slots = itertools.count()
    _draw = (-_IDS_PER_DRAW, "")


on_fork_in_child("message_ids", _reset_after_fork)


Notes = Optional[list[tuple[str, str]]]
"""Where a builder writes down what it fixed up instead of refusing (``strict=False``).

``None`` (strict) makes every helper raise ``ValidationError``; a list makes
them accept what segment-analytics-python accepts, appending ``(path, what was
done)`` for each such value. Builders are called strict first, so the common,
valid call never pays for this.
"""


def _lenient(notes: Notes, path: str, done: str, error: str) -> None:
    """Note a fix-up in lenient mode; raise ``error`` in strict mode."""
    if notes is None:
        raise ValidationError(error, path)
    notes.append((path, done))


def _truthy(value: Any) -> bool:
    """``bool(value)``, where an object whose ``__bool__`` (or ``__len__``) raises counts as non-empty."""
    try:
        return bool(value)
    except Exception:
        return True


def _as_text(value: Any, path: str, kind: str) -> str:
    """``str(value)`` as the reference sends a non-string id; ValidationError if ``__str__`` fails."""
    try:
        text = str(value)
    except Exception as exc:
        raise ValidationError(
            f"{kind}: {path} could not be made a string: str() of {type(value).__name__} raised "
            f"{type(exc).__name__}",
            path,
        ) from None
    return text


def _stringified(value: Any, path: str, kind: str, notes: Notes) -> Optional[str]:
    """An identifier as the reference sends it: None, a string as is, anything else ``str()``."""
    if value is None or type(value) is str:
        return value
    if isinstance(value, str):  # a subclass: its characters, without calling its methods
        return str.__str__(value)
    if isinstance(value, _ID_TYPES) and not isinstance(value, bool):
        return _as_text(value, path, kind)
    if notes is None:  # strict: refuse before formatting anything of the value
        raise ValidationError(f"{kind}: {path} must be a string or number, got {type(value).__name__}", path)
    text = _as_text(value, path, kind)
    notes.append((path, f"{type(value).__name__} {safe_repr(value)} sent as the string {safe_repr(text)}"))
    return text


def _usable_id(value: Any) -> bool:
    """An id strict mode takes: a non-empty string, a number (not a bool) or a UUID."""
    if type(value) is str:
        return bool(value)
    return isinstance(value, _ID_TYPES) and not isinstance(value, bool)


def _required_id(value: Any, path: str, param: str, kind: str, notes: Notes) -> str:
    """A required identifier (``groupId``, ``previousId``, alias ``userId``), passed as ``param``."""
    if type(value) is str and value:
        return value
    if isinstance(value, str):
        value = str.__str__(value)  # a subclass: its characters, without calling its methods
    if value is None or (notes is not None and not isinstance(value, _ID_TYPES)):
        # The reference refuses these too (it takes strings and numbers).
        raise ValidationError(f"{kind}: {param} is required", path)
    if isinstance(value, str) and not value:
        _lenient(notes, path, "empty string sent as given", f"{kind}: {param} is required")
        return ""
    result = _stringified(value, path, kind, notes)
    assert result is not None
    return result


def _dict(value: Any, path: str, kind: str, notes: Notes) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    if isinstance(value, Mapping):
        return _copy_mapping(value, path, kind)
    if not _truthy(value):  # the reference reads any empty value as {}
        _lenient(
            notes,
            path,
            f"empty {type(value).__name__} sent as {{}}",
            f"{kind}: {path} must be a dict, got {type(value).__name__}",
        )
        return {}
    raise ValidationError(f"{kind}: {path} must be a dict, got {type(value).__name__}", path)


def _copy_mapping(value: Any, path: str, kind: str) -> dict[Any, Any]:
    """A dict copy of a Mapping; ValidationError naming ``path`` when the Mapping cannot be read."""
    try:
        return dict(value)
    except Exception as exc:
        raise ValidationError(
            f"{kind}: {path} could not be read: {type(value).__name__} raised {type(exc).__name__} "
            "when copied",
            path,
        ) from None


def _optional_str(value: Any, path: str, kind: str, notes: Notes) -> Optional[str]:
    if value is None or type(value) is str:
        return value
    if isinstance(value, str):
        return str.__str__(value)  # a subclass: its characters, without calling its methods
    if not _truthy(value):  # the reference lets any empty value through
        _lenient(
            notes,
            path,
            f"empty {type(value).__name__} sent as null",
            f"{kind}: {path} must be a string, got {type(value).__name__}",
        )
        return None
    raise ValidationError(f"{kind}: {path} must be a string, got {type(value).__name__}", path)


def _message_id(value: Any, kind: str, notes: Notes) -> str:
    if value is None:
        return new_message_id()
    mid = _stringified(value, "messageId", kind, notes)
    assert mid is not None
    if not 0 < len(mid) <= MAX_MESSAGE_ID_CHARS:
        _lenient(
            notes,
            "messageId",
            f"{len(mid)}-character messageId sent as given",
            f"{kind}: messageId must be 1 to {MAX_MESSAGE_ID_CHARS} characters, got {len(mid)}",
        )
    return mid


def _common(
    message: Message,
    kind: str,
    context: Any,
    timestamp: Any,
    integrations: Any,
    message_id: Any,
    notes: Notes,
) -> Message:
    """Fill the fields every message carries: messageId, timestamp, context, integrations."""
    message["messageId"] = new_message_id() if message_id is None else _message_id(message_id, kind, notes)
    message["timestamp"] = now_iso() if timestamp is None else format_timestamp(timestamp)
    if context is None:
        message["context"] = {"library": LIBRARY}
    else:
        given = context if type(context) is dict else _dict(context, "context", kind, notes)
        try:
            merged = dict(given)
        except Exception:  # a dict subclass whose keys() raises: refused, naming the field
            merged = _copy_mapping(given, "context", kind)
        merged.setdefault("library", LIBRARY)
        message["context"] = merged
    message["integrations"] = {} if integrations is None else _dict(integrations, "integrations", kind, notes)
    return message


def _identity(message: Message, kind: str, user_id: Any, anonymous_id: Any, notes: Notes) -> None:
    """``userId`` and ``anonymousId``, both always present (None when absent), as the reference sends them."""
    if anonymous_id is None and type(user_id) is str and user_id:  # the common case, checked first
        message["userId"] = user_id
        message["anonymousId"] = None
        return
    uid = _stringified(user_id, "userId", kind, notes)
    aid = _stringified(anonymous_id, "anonymousId", kind, notes)
    if not (_usable_id(user_id) or _usable_id(anonymous_id)):
        # The reference takes any string or number in ``user_id or anonymous_id``.
        primary = user_id if _truthy(user_id) else anonymous_id
        if notes is None or not isinstance(primary, (str, numbers.Number)):
            raise ValidationError(f"{kind}: user_id or anonymous_id is required", "userId")
        if not (uid or aid):
            notes.append(("userId", "user_id and anonymous_id are both empty; sent as given"))
    message["userId"] = uid
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
    *,
    notes: Notes = None,
) -> Message:
    """Build a track message; raises ``ValidationError`` naming the field at fault."""
    if type(event) is not str or not event:
        if not isinstance(event, str):
            what = type(event).__name__ if _truthy(event) else safe_repr(event)
            raise ValidationError(f"track: event must be a non-empty string, got {what}", "event")
        event = str.__str__(event)  # a subclass: its characters, without calling its methods
        if not event:
            _lenient(
                notes,
                "event",
                "empty event name sent as given",
                "track: event must be a non-empty string, got ''",
            )
    message: Message = {"type": "track", "event": event}
    _identity(message, "track", user_id, anonymous_id, notes)
    if type(properties) is not dict:
        properties = _dict(properties, "properties", "track", notes)
    message["properties"] = properties
    return _common(message, "track", context, timestamp, integrations, message_id, notes)


def build_identify(
    user_id: Any = None,
    traits: Any = None,
    context: Any = None,
    timestamp: Any = None,
    anonymous_id: Any = None,
    integrations: Any = None,
    message_id: Any = None,
    *,
    notes: Notes = None,
) -> Message:
    """Build an identify message."""
    message: Message = {"type": "identify"}
    _identity(message, "identify", user_id, anonymous_id, notes)
    message["traits"] = _dict(traits, "traits", "identify", notes)
    return _common(message, "identify", context, timestamp, integrations, message_id, notes)


def build_group(
    user_id: Any = None,
    group_id: Any = None,
    traits: Any = None,
    context: Any = None,
    timestamp: Any = None,
    anonymous_id: Any = None,
    integrations: Any = None,
    message_id: Any = None,
    *,
    notes: Notes = None,
) -> Message:
    """Build a group message; ``group_id`` is required."""
    message: Message = {
        "type": "group",
        "groupId": _required_id(group_id, "groupId", "group_id", "group", notes),
    }
    _identity(message, "group", user_id, anonymous_id, notes)
    message["traits"] = _dict(traits, "traits", "group", notes)
    return _common(message, "group", context, timestamp, integrations, message_id, notes)


def build_alias(
    previous_id: Any = None,
    user_id: Any = None,
    context: Any = None,
    timestamp: Any = None,
    integrations: Any = None,
    message_id: Any = None,
    *,
    notes: Notes = None,
) -> Message:
    """Build an alias message; ``previous_id`` and ``user_id`` are both required."""
    message: Message = {
        "type": "alias",
        "previousId": _required_id(previous_id, "previousId", "previous_id", "alias", notes),
        "userId": _required_id(user_id, "userId", "user_id", "alias", notes),
        "anonymousId": None,  # as the reference sends it
    }
    return _common(message, "alias", context, timestamp, integrations, message_id, notes)


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
    *,
    notes: Notes = None,
) -> Message:
    """Build a page or screen message (``kind``): the two share every field but ``type``."""
    message: Message = {"type": kind}
    _identity(message, kind, user_id, anonymous_id, notes)
    message["name"] = _optional_str(name, "name", kind, notes)
    message["category"] = _optional_str(category, "category", kind, notes)
    message["properties"] = _dict(properties, "properties", kind, notes)
    return _common(message, kind, context, timestamp, integrations, message_id, notes)
