"""Parse the timestamps of historical data: ISO-8601 strings and epoch numbers, in a chosen time zone."""

from __future__ import annotations

import datetime
import re
from typing import Any, Optional

from dateutil.parser import isoparse

from segment_lite.errors import SegmentLiteError

__all__ = [
    "EPOCH_MICROSECONDS_FROM",
    "EPOCH_MILLISECONDS_FROM",
    "EPOCH_NANOSECONDS_FROM",
    "TimestampError",
    "parse_timestamp",
    "resolve_timezone",
]

UTC = datetime.timezone.utc

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


class TimestampError(SegmentLiteError, ValueError):
    """A value that is not a usable timestamp."""


def resolve_timezone(name: Optional[str]) -> datetime.tzinfo:
    """The time zone called ``name`` (an IANA name such as ``Europe/Paris``, or ``UTC``).

    Uses ``zoneinfo`` (Python 3.9+); where the system has no time zone database
    and the ``tzdata`` package is absent, falls back to ``dateutil.tz``. Raises
    ``TimestampError`` for an unknown name. ``None`` means UTC.
    """
    if name is None or name.strip().upper() in ("UTC", "Z", "GMT", "ETC/UTC"):
        return UTC
    try:
        import zoneinfo

        return zoneinfo.ZoneInfo(name.strip())
    except (ImportError, ValueError, KeyError, OSError):
        pass
    from dateutil import tz

    found = tz.gettz(name.strip())
    if found is None:
        raise TimestampError(f"unknown time zone {name!r} (use an IANA name such as Europe/Paris)")
    return found


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


def _from_string(text: str, tz: datetime.tzinfo) -> datetime.datetime:
    value = text.strip()
    if not value:
        raise TimestampError("timestamp is empty")
    if _NUMERIC.match(value):
        number = float(value) if any(c in value for c in ".eE") else int(value)
        return _from_epoch(number)
    parsed: Optional[datetime.datetime] = None
    candidate = value[:-1] + "+00:00" if value[-1:] in ("Z", "z") else value
    try:
        # The fast path: the standard library reads the common ISO forms.
        parsed = datetime.datetime.fromisoformat(candidate)
    except ValueError:
        try:
            parsed = isoparse(value)
        except (ValueError, OverflowError):
            raise TimestampError(f"not an ISO-8601 date-time or epoch number: {text[:64]!r}") from None
    if parsed.tzinfo is None or parsed.tzinfo.utcoffset(parsed) is None:
        parsed = _localize(parsed, tz)
    return parsed


def _localize(value: datetime.datetime, tz: datetime.tzinfo) -> datetime.datetime:
    """Attach ``tz`` to a naive value (for an ambiguous or skipped local time, ``fold=0`` decides)."""
    return value.replace(tzinfo=tz)


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
    if isinstance(value, str):
        result = _from_string(value, zone)
    elif isinstance(value, bool):
        raise TimestampError("timestamp must be a date-time or epoch number, got a boolean")
    elif isinstance(value, (int, float)):
        if value != value or value in (float("inf"), float("-inf")):
            raise TimestampError(f"timestamp must be a finite number, got {value!r}")
        result = _from_epoch(value)
    elif isinstance(value, datetime.datetime):
        result = (
            value if value.tzinfo is not None and value.utcoffset() is not None else _localize(value, zone)
        )
    elif isinstance(value, datetime.date):
        result = _localize(datetime.datetime(value.year, value.month, value.day), zone)
    else:
        raise TimestampError(
            f"timestamp must be a date-time string or epoch number, got {type(value).__name__}"
        )
    try:
        return result.astimezone(UTC)
    except (OverflowError, ValueError):
        raise TimestampError(f"timestamp {value!r} is out of range") from None
