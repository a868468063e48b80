"""What JSON encoders let through: nesting deeper than the limit, and dict keys that collide once written."""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable
from typing import Any, Optional

from segment_lite.errors import EncodeError, NestingTooDeepError, safe_repr
from segment_lite.limits import MAX_NESTING_DEPTH

__all__ = ["check_shape", "is_plain", "key_text", "may_be_too_deep", "replace_non_finite"]

_CONTAINERS = (dict, list, tuple)
_DATETIME = datetime.datetime  # a common leaf, compared by identity


def may_be_too_deep(encoded: bytes, limit: int = MAX_NESTING_DEPTH) -> bool:
    """Whether encoded JSON could nest deeper than ``limit``: False when it has too few brackets.

    One C-speed pass (deleting the opening brackets and comparing lengths), so the
    common message is cleared without a walk. Brackets inside strings can only make
    it say True, and the exact check then decides.
    """
    return len(encoded) - len(encoded.translate(None, b"{[")) > limit


def key_text(key: Any) -> str:
    """The JSON object key a dict key becomes (as the standard library and orjson write it)."""
    if isinstance(key, str):
        return key if type(key) is str else str.__str__(key)
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return "null"
    if isinstance(key, float):
        if math.isnan(key):
            return "NaN"
        if math.isinf(key):
            return "Infinity" if math.copysign(1.0, key) > 0 else "-Infinity"
        return float.__repr__(key)
    return int.__repr__(key)


def check_shape(message: Any, limit: int = MAX_NESTING_DEPTH, keys: bool = True) -> None:
    """Raise at the first place where ``message`` is not a JSON object a server will take.

    ``NestingTooDeepError`` (an ``EncodeError``) at the first object or array more
    than ``limit`` levels deep (the message itself is level 1); with ``keys``, an
    ``EncodeError`` at the first dict whose keys collide once written as JSON
    strings (``{1: "a", "1": "b"}``: one value would be silently lost). The walk
    stops at the limit, so a message nested 10,000 deep costs no more than one
    nested ``limit + 1`` deep and never raises ``RecursionError``.
    """
    if not (limit >= 1 and _plain(message, 1, limit, keys)):
        _walk(message, "", 1, limit, keys, set())  # find the place and name it (or clear non-str keys)


def is_plain(message: Any, fields: Optional[Iterable[str]] = None, limit: int = MAX_NESTING_DEPTH) -> bool:
    """True when ``check_shape(message)`` has nothing to find: every key a str, nothing nested past ``limit``.

    The fast pass of ``check_shape``, without a path or an error: False means
    "walk it" (``check_shape`` may still pass it: int keys that do not collide).
    ``fields``: ``message`` is a dict made by a builder of ``segment_lite.message``
    and not changed since by user code (a ``before_send`` hook): its own keys are
    str and only the values of these fields (``message.CALLER_FIELDS``) can hold a
    container, so only they are looked at. That skips a third of the walk of a
    typical event.
    """
    if fields is None:
        return limit >= 1 and _plain(message, 1, limit, True)
    if limit < 1:
        return False
    for field in fields:
        value = message.get(field)
        if value is None:  # a field this kind of message does not have
            continue
        if (
            (type(value) is dict or isinstance(value, _CONTAINERS))
            and value
            and (limit == 1 or not _plain(value, 2, limit, True))
        ):
            return False
    return True


def _plain(value: Any, depth: int, limit: int, keys: bool) -> bool:
    """The fast pass: True if nothing is too deep and (with ``keys``) every key is a str.

    ``value`` is a dict, list or tuple at level ``depth``, which is at most ``limit``.
    Each child's type is compared with the common ones by identity before any
    ``isinstance`` call (a subclass of them falls through to ``isinstance``).
    """
    if type(value) is dict or isinstance(value, dict):
        if not keys:
            return _plain_items(value.values(), depth, limit, keys)
        for key, child in value.items():  # keys and values in one loop
            if type(key) is not str:
                return False
            kind = type(child)
            if (
                kind is str
                or kind is int
                or kind is float
                or kind is bool
                or child is None
                or kind is _DATETIME
            ):
                continue
            if (
                (kind is dict or kind is list or isinstance(child, _CONTAINERS))
                and child
                and (depth == limit or not _plain(child, depth + 1, limit, keys))
            ):
                return False
        return True
    return _plain_items(value, depth, limit, keys)


def _plain_items(children: Any, depth: int, limit: int, keys: bool) -> bool:
    for child in children:
        kind = type(child)
        if kind is str or kind is int or kind is float or kind is bool or child is None or kind is _DATETIME:
            continue
        # An empty container cannot be too deep or hold a key: not worth a call.
        if (
            (kind is dict or kind is list or isinstance(child, _CONTAINERS))
            and child
            and (depth == limit or not _plain(child, depth + 1, limit, keys))
        ):
            return False
    return True


def _walk(value: Any, path: str, depth: int, limit: int, keys: bool, active: set[int]) -> None:
    if id(value) in active:
        raise EncodeError(path or "message", "circular reference")
    if depth > limit:
        raise NestingTooDeepError(path or "message", limit)
    active.add(id(value))
    if isinstance(value, dict):
        has_other_keys = False
        for key, item in value.items():
            if type(key) is not str:
                has_other_keys = True
            if isinstance(item, _CONTAINERS):
                text = _path_key(key)
                _walk(item, f"{path}.{text}" if path else text, depth + 1, limit, keys, active)
        if keys and has_other_keys:
            _check_keys(value, path)
    else:
        for index, item in enumerate(value):
            if isinstance(item, _CONTAINERS):
                _walk(item, f"{path}[{index}]", depth + 1, limit, keys, active)
    active.discard(id(value))


def _path_key(key: Any) -> str:
    """A dict key as a path names it, without running a caller's ``__str__`` or ``__format__``."""
    if type(key) in (str, int, float, bool, type(None)):
        return str(key)
    if isinstance(key, (str, int, float)):
        return key_text(key)
    return safe_repr(key)


def _check_keys(value: dict[Any, Any], path: str) -> None:
    seen: dict[str, Any] = {}
    for key in value:
        text = key_text(key) if isinstance(key, (str, int, float, type(None))) else None
        if text is None:
            continue  # not a JSON key type at all: the encoder names it
        if text in seen:
            where = f"{path}.{text}" if path else text
            raise EncodeError(
                where,
                f"keys {safe_repr(seen[text])} and {safe_repr(key)} are both written as {text!r}: "
                "one value would be lost",
            )
        seen[text] = key


def replace_non_finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (which JSON cannot carry) replaced by None.

    Dicts, lists and tuples are copied (tuples become lists); other values are returned as they are.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: replace_non_finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [replace_non_finite(item) for item in value]
    return value
