"""Timestamps in one place: read what callers, files and requests give, write what the Tracking API gets.

* The client writes a message's ``timestamp`` as segment-analytics-python does:
  ISO-8601 with milliseconds and the offset kept (``2024-05-01T12:00:00.000+02:00``),
  reading a naive ``datetime`` as that client does (:func:`guess_timezone`).
* :func:`parse_iso` reads ISO-8601 text; :func:`parse_timestamp` also reads epoch
  numbers and naive values in a chosen zone (the importer); :func:`parse_api_timestamp`
  reads only the forms the Tracking API takes (the collector).
* :func:`format_utc` writes an instant in UTC with a ``Z`` (the collector's
  ``receivedAt``, the batch's ``sentAt``).
"""

from __future__ import annotations

import datetime
import re
import time
from typing import Any, Optional

from dateutil.parser import isoparse
from dateutil.tz import tzlocal

from segment_lite.errors import TimestampError, ValidationError

__all__ = [
    "EPOCH_MICROSECONDS_FROM",
    "EPOCH_MILLISECONDS_FROM",
    "EPOCH_NANOSECONDS_FROM",
    "LOCAL_TIME_WINDOW_S",
    "UTC",
    "TimestampError",
    "format_timestamp",
    "format_utc",
    "guess_timezone",
    "iso_from_epoch",
    "now_iso",
    "parse_api_timestamp",
    "parse_iso",
    "parse_timestamp",
]

UTC = datetime.timezone.utc
#: A naive datetime less than this many seconds before now (or any time after it)
#: is read as local time, as segment-analytics-python reads ``datetime.now()``.
LOCAL_TIME_WINDOW_S = 5.0

#: An epoch number whose magnitude is at least this is read as milliseconds.
#: 1e11 seconds is the year 5138, while 1e11 milliseconds is 1973-03-03: every
#: plausible event time in seconds is below it and every one in milliseconds
#: since March 1973 is above it.
EPOCH_MILLISECONDS_FROM = 10**11
#: ... as microseconds (1e14 ms is again the year 5138).
EPOCH_MICROSECONDS_FROM = 10**14
#: ... as nanoseconds.
EPOCH_NANOSECONDS_FROM = 10**17

_NUMERIC = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)


# -- now -----------------------------------------------------------------------
#
# ``datetime.now(utc).isoformat(...)`` costs about 1.5 us; the date and time to the
# second change once a second, so they are formatted once and cached, and the
# milliseconds (with the UTC offset, as the reference writes it) come from a table.

_time_ns = time.time_ns
_second_prefix: tuple[int, str] = (-1, "")  # (epoch second, "YYYY-MM-DDTHH:MM:SS")
_MILLIS = [f".{millis:03d}+00:00" for millis in range(1000)]


def now_iso() -> str:
    """The current UTC time as the client writes it, e.g. ``2026-01-02T03:04:05.678+00:00``."""
    global _second_prefix
    ns = _time_ns()
    second = ns // 1_000_000_000
    cached_second, prefix = _second_prefix
    if second != cached_second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second_prefix = (second, prefix)
    return prefix + _MILLIS[ns // 1_000_000 % 1000]


def iso_from_epoch(seconds: float) -> str:
    """Epoch seconds as ISO-8601 UTC with milliseconds and a ``Z`` (a batch's ``sentAt``)."""
    return datetime.datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


# -- the client's timestamps ------------------------------------------------------


def _is_naive(moment: datetime.datetime) -> bool:
    return moment.tzinfo is None or moment.tzinfo.utcoffset(moment) is None


def guess_timezone(moment: datetime.datetime) -> datetime.datetime:
    """An aware datetime for ``moment``, read as segment-analytics-python reads it.

    An aware datetime is returned as it is. A naive one made within
    ``LOCAL_TIME_WINDOW_S`` of now (or later than now) is taken to be local time,
    as ``datetime.now()`` gives it; any older naive one is taken to be UTC.
    """
    if not _is_naive(moment):
        return moment
    if (datetime.datetime.now() - moment).total_seconds() < LOCAL_TIME_WINDOW_S:
        return moment.replace(tzinfo=tzlocal())
    return moment.replace(tzinfo=UTC)


def format_timestamp(value: Any, path: str = "timestamp") -> str:
    """A caller's timestamp as the client sends it: ISO-8601, milliseconds, offset kept.

    Accepts a datetime (a naive one read by :func:`guess_timezone`), a date
    (midnight UTC) or a string in the extended ISO-8601 / RFC 3339 form that
    :data:`CLIENT_TIMESTAMP_FORMS` describes (one without an offset is UTC).
    Raises ``ValidationError`` naming ``path`` for anything else, including a
    datetime whose tzinfo gives no usable UTC offset.
    """
    if isinstance(value, datetime.datetime):
        try:
            moment = guess_timezone(value)
            text = moment.isoformat(timespec="milliseconds")
        except Exception as exc:  # a tzinfo (or subclass) of the caller's that misbehaves
            raise ValidationError(
                f"{path}: the datetime's tzinfo {type(value.tzinfo).__name__} gives no usable UTC offset "
                f"({type(exc).__name__})",
                path,
            ) from None
    elif isinstance(value, datetime.date):
        return f"{datetime.date.isoformat(value)}T00:00:00.000+00:00"
    elif isinstance(value, str):
        moment = _parse_client_string(str.__str__(value), path)
        text = moment.isoformat(timespec="milliseconds")
    else:
        raise ValidationError(
            f"{path} must be a datetime, date or ISO-8601 string, got {type(value).__name__}", path
        )
    if moment.year in (1, 9999):  # the server reads it in UTC: it must exist there
        try:
            moment.astimezone(UTC)
        except OverflowError:
            raise ValidationError(
                f"{path} is out of range once converted to UTC (years 1 to 9999): {text}", path
            ) from None
    return text


#: The strings a call's ``timestamp`` may be, as docs/message-format.md lists them.
CLIENT_TIMESTAMP_FORMS = "YYYY-MM-DD[Thh:mm[:ss[.fff]]][Z|+hh:mm|+hhmm|+hh] (a space may replace the T)"


def _parse_client_string(text: str, path: str) -> datetime.datetime:
    """A call's timestamp string, in one of ``CLIENT_TIMESTAMP_FORMS`` only, as an aware datetime.

    dateutil reads much more (``20240301120000`` as 20:00, with the 9th digit taken
    for a separator; ``"1" * 5000`` as the year 1111), so the shape is checked first.
    """
    value = text.strip()
    if _API_TIMESTAMP.match(value):
        try:
            return parse_iso(_SPACE_BEFORE_OFFSET.sub("", value))
        except TimestampError:
            pass  # the right shape, but not a date-time: a month 13, a February 30
    raise ValidationError(f"{path} must be an ISO-8601 date-time, got {_string_shape(text)}", path)


def _string_shape(text: str) -> str:
    """A refused timestamp string as its error shows it: itself if short, else its length, kind and start."""
    stripped = text.strip()
    if stripped.isascii() and stripped.isdigit():
        start = repr(stripped[:20]) + ("..." if len(stripped) > 20 else "")
        shape = f"a string of {len(stripped)} digits ({start})"
    elif len(text) <= 40:
        return repr(text)
    else:
        shape = f"a {len(text)}-character string starting {text[:32]!r}"
    return f"{shape}; only the extended form is read: {CLIENT_TIMESTAMP_FORMS}"


def format_utc(moment: datetime.datetime) -> str:
    """``moment`` in UTC with a ``Z``: milliseconds, or microseconds when it has them."""
    moment = moment.astimezone(UTC)
    base = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    if moment.microsecond % 1000 == 0:
        return f"{base}.{moment.microsecond // 1000:03d}Z"
    return f"{base}.{moment.microsecond:06d}Z"


# -- reading timestamps -------------------------------------------------------------


def parse_iso(text: str, tz: datetime.tzinfo = UTC) -> datetime.datetime:
    """An aware datetime from ISO-8601 ``text``, its offset kept; text without one is in ``tz``.

    Reads every ISO-8601 form dateutil's ``isoparse`` reads (``2024-03-01``,
    ``20240301T120000Z``, fractions beyond microseconds are cut). Raises
    ``TimestampError``.
    """
    value = text.strip()
    if not value:
        raise TimestampError("timestamp is empty")
    candidate = value[:-1] + "+00:00" if value[-1:] in ("Z", "z") else value
    try:
        # The fast path: the standard library reads the common ISO forms.
        parsed = datetime.datetime.fromisoformat(candidate)
    except ValueError:
        try:
            parsed = isoparse(value)
        except (ValueError, OverflowError):
            raise TimestampError(f"not an ISO-8601 date-time: {text[:64]!r}") from None
    if _is_naive(parsed):
        # For an ambiguous or skipped local time, fold=0 decides.
        parsed = parsed.replace(tzinfo=tz)
    return parsed


#: The ISO-8601 forms the Tracking API takes: an extended date, optionally with
#: hh:mm[:ss[.fraction]] (after "T", "t" or a space) and an offset (Z, ±hh, ±hhmm, ±hh:mm).
_API_TIMESTAMP = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)?\s*(?:Z|z|[+-]\d{2}(?::?\d{2})?)?$",
    re.ASCII,  # \d is 0-9 only, not every script's digits
)

_SPACE_BEFORE_OFFSET = re.compile(r"\s+(?=(?:Z|z|[+-]\d{2}(?::?\d{2})?)$)")


def parse_api_timestamp(text: str) -> datetime.datetime:
    """An aware UTC datetime from a timestamp in a form the Tracking API takes (see ``_API_TIMESTAMP``).

    Stricter than :func:`parse_iso`: no basic (``20240501T1200``), week or
    ordinal forms, no hour without minutes. Text without an offset is UTC;
    fractions beyond microseconds are cut. Raises ``TimestampError``.
    """
    value = text.strip()
    if not _API_TIMESTAMP.match(value):
        raise TimestampError(f"not an ISO-8601 timestamp: {text[:64]!r}")
    value = _SPACE_BEFORE_OFFSET.sub("", value)  # the API takes "12:00 +01:00"; parsers do not
    try:
        return parse_iso(value).astimezone(UTC)
    except OverflowError:  # year 1 with a positive offset, year 9999 with a negative one
        raise TimestampError(f"not a timestamp that exists in UTC: {text[:64]!r}") from None


def _from_epoch(number: float) -> datetime.datetime:
    magnitude = abs(number)
    if magnitude >= EPOCH_NANOSECONDS_FROM:
        seconds = number / 1e9
    elif magnitude >= EPOCH_MICROSECONDS_FROM:
        seconds = number / 1e6
    elif magnitude >= EPOCH_MILLISECONDS_FROM:
        seconds = number / 1e3
    else:
        seconds = number
    try:
        # Built from a timedelta rather than fromtimestamp, so negative and
        # fractional values behave the same on every platform; rounded to the
        # millisecond, the precision Segment keeps.
        return _EPOCH + datetime.timedelta(milliseconds=round(seconds * 1000))
    except (OverflowError, ValueError):
        raise TimestampError(f"epoch value {number!r} is out of range") from None


def parse_timestamp(value: Any, tz: Optional[datetime.tzinfo] = None) -> datetime.datetime:
    """Read ``value`` as a point in time and return an aware UTC datetime.

    * ISO-8601 strings (``2024-03-01T12:00:00Z``, ``2024-03-01 12:00:00+01:00``,
      ``2024-03-01``); values without an offset are in ``tz`` (default UTC).
    * Epoch numbers, as numbers or numeric strings, in seconds, milliseconds,
      microseconds or nanoseconds, told apart by magnitude: below 1e11 seconds,
      below 1e14 milliseconds, below 1e17 microseconds, else nanoseconds. So
      millisecond values before 1973-03-03 would be misread as seconds.
    * ``datetime`` (naive ones in ``tz``) and ``date`` (midnight in ``tz``).

    Raises ``TimestampError`` for anything else.
    """
    zone = UTC if tz is None else tz
    result: datetime.datetime
    if isinstance(value, str):
        if _NUMERIC.match(value):
            text = value.strip()
            result = _from_epoch(float(text) if any(c in text for c in ".eE") else int(text))
        else:
            result = parse_iso(value, zone)
    elif isinstance(value, bool):
        raise TimestampError("timestamp must be a date-time or epoch number, got a boolean")
    elif isinstance(value, (int, float)):
        if value != value or value in (float("inf"), float("-inf")):
            raise TimestampError(f"timestamp must be a finite number, got {value!r}")
        result = _from_epoch(value)
    elif isinstance(value, datetime.datetime):
        result = value if not _is_naive(value) else value.replace(tzinfo=zone)
    elif isinstance(value, datetime.date):
        result = datetime.datetime(value.year, value.month, value.day, tzinfo=zone)
    else:
        raise TimestampError(
            f"timestamp must be a date-time string or epoch number, got {type(value).__name__}"
        )
    try:
        return result.astimezone(UTC)
    except (OverflowError, ValueError):
        raise TimestampError(f"timestamp {value!r} is out of range") from None
