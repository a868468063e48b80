"""Encode a message to compact JSON bytes, once, naming the path of anything that cannot be encoded."""

from __future__ import annotations

import datetime
import decimal
import enum
import json
import math
import uuid
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any, Callable, Optional

from segment_lite.errors import EncodeError
from segment_lite.shape import check_shape, may_be_too_deep

__all__ = ["HAVE_ORJSON", "encode", "json_default"]


def json_default(value: Any) -> Any:
    """Map the non-JSON types users put in properties to JSON values.

    datetime/date/time -> ISO-8601 string, Decimal -> number, UUID -> string,
    Enum -> its value, set/frozenset -> list, UTF-8 bytes -> string.
    """
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
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
    raise TypeError(f"{type(value).__module__}.{type(value).__qualname__} is not JSON serializable")


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
        text = _stdlib_encoder.encode(_replace_non_finite(message))
    return text.encode("utf-8")


def _replace_non_finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _replace_non_finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_replace_non_finite(item) for item in value]
    return value


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


_SCALARS = (str, int, float, bool, type(None))
_KEY_TYPES = (str, int, float, bool, type(None))


def _raise_with_path(message: Any) -> None:
    """Walk ``message`` and raise ``EncodeError`` at the first value that cannot be encoded."""
    _check(message, "", set())
    raise EncodeError("message", "not JSON serializable")  # pragma: no cover - walk always finds it


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _check(value: Any, path: str, active: set[int]) -> None:
    where = path or "message"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise EncodeError(where, f"string is not valid Unicode ({exc.reason})") from None
        return
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        if id(value) in active:
            raise EncodeError(where, "circular reference")
        active.add(id(value))
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, _KEY_TYPES):
                    raise EncodeError(_join(path, repr(key)), f"dict key of type {type(key).__name__}")
                _check(item, _join(path, key), active)
        else:
            for index, item in enumerate(value):
                _check(item, f"{path}[{index}]", active)
        active.discard(id(value))
        return
    try:
        converted = json_default(value)
    except TypeError as exc:
        raise EncodeError(where, str(exc)) from None
    except UnicodeDecodeError:
        raise EncodeError(where, "bytes are not valid UTF-8") from None
    _check(converted, path, active)
