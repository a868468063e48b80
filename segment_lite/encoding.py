"""Encode a message to compact JSON bytes, once, naming the path of anything that cannot be encoded.

Two paths. ``encode_plain`` is the hot one: a message of JSON values (and
datetimes, written as ISO-8601) is encoded as it is. Anything else (a Decimal, a
set, bytes, a Mapping that is not a dict, a value that cannot be encoded at all)
takes ``encode_converting``, which makes the message as it will be sent (a
Decimal becomes a float, a set a list, ...) and, when asked to, leaves out
what cannot be encoded instead of refusing the message.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import json
import math
import uuid
from collections.abc import Iterable, Mapping
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any, Callable, Optional

from segment_lite.errors import EncodeError, NestingTooDeepError, SegmentLiteError, safe_repr
from segment_lite.limits import MAX_NESTING_DEPTH
from segment_lite.shape import check_shape, is_plain, key_text, may_be_too_deep, replace_non_finite

__all__ = ["HAVE_ORJSON", "encode", "encode_converting", "encode_plain", "json_default"]


_DATE_TYPES = (datetime.datetime, datetime.date, datetime.time)  # written as ISO-8601


def json_default(value: Any) -> Any:
    """Map the non-JSON types users put in properties to JSON values.

    datetime/date/time -> ISO-8601 string, Decimal -> number, UUID -> string,
    Enum -> its value, set/frozenset -> list, UTF-8 bytes -> string, Mapping -> dict.
    """
    if isinstance(value, _DATE_TYPES):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        if decimal.Decimal.is_snan(value):
            raise TypeError(_SIGNALING_NAN)
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8")
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__module__}.{type(value).__qualname__} is not JSON serializable")


_SIGNALING_NAN = "Decimal('sNaN') is a signaling NaN: it has no JSON value"

_stdlib_encoder = json.JSONEncoder(
    ensure_ascii=False,
    separators=(",", ":"),
    default=json_default,
    allow_nan=True,  # non-finite floats are caught below and turned into null
)

# The standard library's C encoder, made once and called directly: ``JSONEncoder.encode``
# builds a new one (and a closure) on every call. No circular-reference markers (a
# loop ends in RecursionError, which ``encode`` reports with its path), and
# ``allow_nan=False`` so a NaN/Infinity raises ValueError instead of being written.
_c_encode: Optional[Callable[[Any, int], Any]] = (
    c_make_encoder(None, json_default, encode_basestring, None, ":", ",", False, False, False)
    if c_make_encoder is not None
    else None
)


def _datetime_only(value: Any) -> Any:
    """The hot path's ``default``: datetimes as ISO-8601; anything else takes the converting path."""
    if isinstance(value, _DATE_TYPES):
        return value.isoformat()
    raise TypeError("needs converting")


_c_encode_plain: Optional[Callable[[Any, int], Any]] = (
    c_make_encoder(None, _datetime_only, encode_basestring, None, ":", ",", False, False, False)
    if c_make_encoder is not None
    else None
)

try:
    import orjson

    HAVE_ORJSON = True
    # Without OPT_NON_STR_KEYS: a dict with a non-str key raises, so such messages take
    # the standard library's path, which checks their keys do not collide once written
    # and writes them as segment-analytics-python does (orjson writes float keys its own
    # way: 6.103515625e-05 becomes "0.00006103515625").
    _ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
    _orjson_dumps: Callable[..., bytes] = orjson.dumps
except ImportError:  # the [fast] extra is not installed
    HAVE_ORJSON = False


def _encode_stdlib(message: Any) -> bytes:
    if _c_encode is not None:
        try:
            return "".join(_c_encode(message, 0)).encode("utf-8")
        except ValueError:
            pass  # a NaN or an Infinity: the path below writes null for it
    text = _stdlib_encoder.encode(message)
    # JSON has no NaN/Infinity; orjson writes null for them, so we do too. The
    # substring test can only give false positives (a string containing "NaN"),
    # which merely take the slower, exact path.
    if "NaN" in text or "Infinity" in text:
        text = _stdlib_encoder.encode(replace_non_finite(message))
    return text.encode("utf-8")


def encode(message: Any) -> bytes:
    """Encode ``message`` to compact UTF-8 JSON.

    Uses orjson when the ``[fast]`` extra is installed, otherwise the standard
    library; both give the same JSON values. Raises ``EncodeError`` naming the
    path of the first value that cannot be encoded, ``NestingTooDeepError`` (an
    ``EncodeError``) for objects and arrays nested deeper than
    ``limits.MAX_NESTING_DEPTH``, and ``EncodeError`` for a dict whose keys
    collide once written (``{1: "a", "1": "b"}``).
    """
    if HAVE_ORJSON:
        try:
            # orjson returns its working buffer (1 KB to 4 KB and more, depending on
            # the version) with the bytes at its start. The queue would hold the whole
            # buffer for every message; ``%`` copies the bytes into an exact-size object.
            data = b"%b" % _orjson_dumps(message, default=json_default, option=_ORJSON_OPTIONS)
        except (TypeError, ValueError):  # orjson.JSONEncodeError is a TypeError
            pass  # a non-str key, an int beyond 64 bits, nesting past orjson's limit...
        else:
            if may_be_too_deep(data):
                check_shape(message, keys=False)
            return data
    # The standard library writes non-str keys without a word: only a walk can tell
    # whether two keys of a dict collide.
    check_shape(message)
    try:
        return _encode_stdlib(message)
    except (TypeError, ValueError, UnicodeError, RecursionError):
        _raise_with_path(message)
        raise  # _raise_with_path always raises; this keeps type checkers content


def encode_plain(message: Any, fields: Optional[Iterable[str]] = None) -> Optional[bytes]:
    """``message`` as JSON if it holds only JSON values and datetimes, else None (convert it first).

    The hot path: nothing is copied. A Decimal, set, bytes, a non-dict Mapping,
    a non-str key, nesting past ``limits.MAX_NESTING_DEPTH``, an unencodable
    value, a NaN (with the standard library) or an int beyond 64 bits (with
    orjson) return None, for ``encode_converting``. ``fields``: ``message`` was
    made by a builder of ``segment_lite.message`` (and at most tagged under
    ``context`` by a tracking plan), so only these fields
    (``message.CALLER_FIELDS``) can hold containers (see ``shape.is_plain``).
    """
    # Any exception (a caller's object whose methods raise) means None: the converting path names it.
    if HAVE_ORJSON:
        try:
            data = b"%b" % _orjson_dumps(message, default=_datetime_only, option=_ORJSON_OPTIONS)
            if may_be_too_deep(data):
                check_shape(message, keys=False)
        except Exception:  # orjson.JSONEncodeError is a TypeError; EncodeError from the shape check
            return None
        return data
    try:
        # The standard library writes non-str keys without a word: only a walk can
        # tell whether two keys of a dict collide.
        if not is_plain(message, fields):
            check_shape(message)
        if _c_encode_plain is not None:
            return "".join(_c_encode_plain(message, 0)).encode("utf-8")
    except Exception:
        return None
    return None  # pragma: no cover - CPython always has the C encoder


def encode_converting(message: Any, dropped: Optional[list[EncodeError]] = None) -> tuple[bytes, Any]:
    """``message`` as it will be sent, and its JSON: for what ``encode_plain`` could not encode.

    Values are converted as segment-analytics-python converts them: a Decimal
    becomes a float, a set a list, UTF-8 bytes a string, a Mapping a dict (datetimes,
    UUIDs and Enums stay as they are; they are written as ISO-8601, a string and
    their value). Containers are copied only where something in them changed.

    With ``dropped=None`` the first value that cannot be encoded raises
    ``EncodeError`` naming its path (``NestingTooDeepError`` past
    ``limits.MAX_NESTING_DEPTH``, an ``EncodeError`` for keys that collide once
    written). With a list, such values are left out (a dict entry, a list item,
    the later of two colliding keys) and an ``EncodeError`` for each is appended.
    """
    converted = _convert(message, "", dropped, set(), 1)
    if converted is _DROP:  # the message itself could not be read
        assert dropped  # pragma: no cover - _convert raised instead when dropped is None
        raise dropped.pop()
    try:
        return encode(converted), converted
    except SegmentLiteError:
        raise
    except Exception as exc:  # pragma: no cover - _convert reads every value the encoders read
        raise EncodeError("message", f"{type(exc).__name__} while encoding") from None


def _raise_with_path(message: Any) -> None:
    """Walk ``message`` and raise ``EncodeError`` at the first value that cannot be encoded."""
    _convert(message, "", None, set(), 1)
    raise EncodeError("message", "not JSON serializable")  # pragma: no cover - the walk always finds it


def _join(path: str, key: Any) -> str:
    # Keys reaching here are str, int, float, bool or None of exactly those types (see
    # _plain_key) or a safe_repr text: formatting them runs none of the caller's code.
    return f"{path}.{key}" if path else str(key)


def _plain_key(key: Any) -> Any:
    """A dict key of a subclass of str, int or float as a value of that type (same JSON, no user code)."""
    if isinstance(key, str):
        return str.__str__(key)
    if isinstance(key, float):
        return float.__float__(key)
    return int.__int__(key)


_KEY_TYPES = (str, int, float, bool, type(None))
_DROP: Any = object()  # _convert's answer for a value left out
Dropped = Optional[list[EncodeError]]


def _unencodable(dropped: Dropped, path: str, reason: str) -> Any:
    error = EncodeError(path or "message", reason)
    if dropped is None:
        raise error
    dropped.append(error)
    return _DROP


def _convert(value: Any, path: str, dropped: Dropped, active: set[int], depth: int) -> Any:
    """``value`` with what the encoder cannot take converted, or ``_DROP`` (see ``encode_converting``).

    ``depth`` is the nesting level ``value`` has if it is an object or array (the message is 1).
    A value whose own methods raise (a Mapping whose ``items()`` fails, a tzinfo that
    gives no offset) cannot be encoded: it is left out or refused at its path.
    """
    try:
        return _convert_value(value, path, dropped, active, depth)
    except SegmentLiteError:
        raise
    except Exception as exc:
        reason = f"{type(value).__name__} raised {type(exc).__name__} when read"
        return _unencodable(dropped, path, reason)


def _convert_value(value: Any, path: str, dropped: Dropped, active: set[int], depth: int) -> Any:
    if isinstance(value, str):
        if not str.isascii(value):
            try:
                str.encode(value, "utf-8")
            except UnicodeEncodeError as exc:
                return _unencodable(dropped, path, f"string is not valid Unicode ({exc.reason})")
        return value
    if value is None or isinstance(value, int):  # bool and IntEnum too
        return value
    if isinstance(value, float):
        # A subclass is sent as its plain value: the encoders would call its own methods (3.12+ puts
        # a non-finite value's repr() in the error it raises), which may raise.
        return value if type(value) is float else float.__float__(value)
    if isinstance(value, (dict, Mapping, list, tuple, set, frozenset)):
        if id(value) in active:
            return _unencodable(dropped, path, "circular reference")
        if depth > MAX_NESTING_DEPTH:
            too_deep = NestingTooDeepError(path or "message", MAX_NESTING_DEPTH)
            if dropped is None:
                raise too_deep
            dropped.append(too_deep)
            return _DROP
        active.add(id(value))
        try:
            if isinstance(value, (dict, Mapping)):
                return _convert_mapping(value, path, dropped, active, depth)
            return _convert_items(value, path, dropped, active, depth)
        finally:
            active.discard(id(value))
    if isinstance(value, decimal.Decimal):
        if decimal.Decimal.is_snan(value):
            return _unencodable(dropped, path, _SIGNALING_NAN)
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time, uuid.UUID)):
        json_default(value)  # raises here, at its path, if the encoder could not write it
        return value  # written by json_default
    if isinstance(value, enum.Enum):
        return value if _convert(value.value, path, dropped, active, depth) is not _DROP else _DROP
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return _unencodable(dropped, path, "bytes are not valid UTF-8")
    try:
        converted = json_default(value)
    except TypeError as exc:
        return _unencodable(dropped, path, str(exc))
    return _convert(converted, path, dropped, active, depth)


def _convert_mapping(value: Any, path: str, dropped: Dropped, active: set[int], depth: int) -> Any:
    changed = type(value) is not dict
    out: dict[Any, Any] = {}
    written: Optional[dict[str, Any]] = None  # key as written -> key, once a key is not a str
    for key, item in value.items():
        if type(key) is not str:
            if not isinstance(key, _KEY_TYPES):
                _unencodable(dropped, _join(path, safe_repr(key)), f"dict key of type {type(key).__name__}")
                changed = True
                continue
            if type(key) not in _KEY_TYPES:
                key = _plain_key(key)
                changed = True
            if written is None:
                written = {key_text(other): other for other in out}
        if written is not None:
            text = key_text(key)
            if text in written:
                clash = f"keys {written[text]!r} and {key!r} are both written as {text!r}"
                clash += ": one value would be lost"
                _unencodable(dropped, _join(path, text), clash)
                changed = True
                continue
            written[text] = key
        converted = _convert(item, _join(path, key), dropped, active, depth + 1)
        if converted is _DROP:
            changed = True
            continue
        if converted is not item:
            changed = True
        out[key] = converted
    return out if changed else value


def _convert_items(value: Any, path: str, dropped: Dropped, active: set[int], depth: int) -> Any:
    changed = isinstance(value, (set, frozenset))
    out = []
    for index, item in enumerate(value):
        converted = _convert(item, f"{path}[{index}]", dropped, active, depth + 1)
        if converted is _DROP:
            changed = True
            continue
        if converted is not item:
            changed = True
        out.append(converted)
    return out if changed else value
