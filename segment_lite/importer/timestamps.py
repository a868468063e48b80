"""Timestamps of historical data: the library's parser (ISO-8601, epoch numbers) and the --timezone lookup."""

from __future__ import annotations

import datetime
from typing import Optional

# Parsing lives in segment_lite.timestamps, the library's one place for it; the
# importer re-exports it and adds only the time zone lookup.
from segment_lite.timestamps import (
    UTC,
    TimestampError,
    parse_timestamp,
)

__all__ = [
    "TimestampError",
    "parse_timestamp",
    "resolve_timezone",
]


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
