"""Turn one row (a Spec message or a mapped record) into the arguments of a client call."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from segment_lite.importer.errors import ImportConfigError, RowError
from segment_lite.importer.mapping import FieldMapping
from segment_lite.importer.timestamps import TimestampError, parse_timestamp, resolve_timezone
from segment_lite.limits import MESSAGE_TYPES

__all__ = ["ARCHIVE_STRIPPED_FIELDS", "MESSAGE_TYPES", "RowConverter", "RowOptions"]

#: Fields Segment advises removing from archived events before sending them again.
ARCHIVE_STRIPPED_FIELDS = ("sentAt", "messageId", "projectId")

Call = tuple[str, dict[str, Any]]


@dataclass
class RowOptions:
    """How rows become messages (the options shared by file imports and :func:`import_rows`).

    Attributes:
        type: the message type of rows that do not name one (``--type``).
        mapping: a :class:`FieldMapping` for flat records (CSV rows, exports); when
            None, each row is a Spec message (``{"type": "track", "userId": ...}``).
        from_archive: rows are Segment archive events: drop ``sentAt``,
            ``messageId`` and ``projectId`` (the messageId is then derived).
        allow_now: a row without a timestamp gets the time of the import instead
            of being rejected.
        timezone: the zone of naive timestamps (an IANA name or a tzinfo; UTC by default).
        integrations: merged into every message's ``integrations`` (these win).
        id_salt: mixed into derived messageIds; change it to re-import the same
            rows as new messages.
    """

    type: Optional[str] = None
    mapping: Optional[FieldMapping] = None
    from_archive: bool = False
    allow_now: bool = False
    timezone: Union[str, datetime.tzinfo, None] = None
    integrations: Optional[dict[str, Any]] = None
    id_salt: str = ""
    _tz: datetime.tzinfo = field(init=False, repr=False, default=datetime.timezone.utc)

    def __post_init__(self) -> None:
        if self.type is not None and self.type not in MESSAGE_TYPES:
            raise ImportConfigError(f"--type must be one of {', '.join(MESSAGE_TYPES)}, got {self.type!r}")
        if self.integrations is not None and not isinstance(self.integrations, dict):
            raise ImportConfigError(
                'integrations must be a JSON object such as {"All": false, "Amplitude": true}'
            )
        if isinstance(self.timezone, datetime.tzinfo):
            self._tz = self.timezone
        else:
            try:
                self._tz = resolve_timezone(self.timezone)
            except TimestampError as exc:
                raise ImportConfigError(str(exc)) from None


#: Longest reason of a rejected timestamp kept as the parser wrote it (longer ones quote the whole value).
_MAX_REASON_CHARS = 160


def _shown(value: Any) -> str:
    """``value`` for an error message: its repr, cut to a few dozen characters with its length."""
    text = repr(value)
    if len(text) <= 48:
        return text
    size = len(value) if isinstance(value, str) else len(str(value))
    unit = "characters" if isinstance(value, str) else "digits"
    return f"{text[:40]}... ({size:,} {unit})"


def _timestamp_reason(where: str, value: Any, exc: Exception) -> str:
    """Why ``value`` is not a timestamp, short whatever its length (a 5,000-digit string included)."""
    if isinstance(exc, TimestampError) and len(str(exc)) <= _MAX_REASON_CHARS:
        return f"{where}: {exc}"
    return f"{where}: {_shown(value)} is not a usable timestamp (out of range, or too many digits)"


def _identity(row: Mapping[str, Any]) -> tuple[Any, Any]:
    return row.get("userId"), row.get("anonymousId")


class RowConverter:
    """Build ``(method, kwargs)`` for ``Client.<method>(**kwargs)`` from a row.

    ``kwargs["message_id"]`` is None when the row has no messageId of its own
    (or ``from_archive`` dropped it): the importer derives one.
    """

    def __init__(self, options: RowOptions) -> None:
        self.options = options
        self._mapping = options.mapping if options.mapping else None
        self._tz = options._tz
        # Where a row's timestamp came from, for the reason of a rejected row.
        column = options.mapping.source_of("timestamp") if options.mapping else None
        self._timestamp_where = "timestamp" if column is None else f"timestamp (column {column!r})"
        self._builders: dict[str, Callable[[Mapping[str, Any], dict[str, Any]], dict[str, Any]]] = {
            "track": _track,
            "identify": _identify,
            "group": _group,
            "alias": _alias,
            "page": _view,
            "screen": _view,
        }

    def convert(self, row: Mapping[str, Any]) -> Call:
        """The client method and its arguments for ``row``; ``RowError`` when it cannot be sent."""
        options = self.options
        if self._mapping is not None:
            row = self._mapping.apply(row)
        kind = row.get("type") or options.type
        if kind is None:
            raise RowError("type is missing (add a type field or column, or pass --type)", "type")
        builder = self._builders.get(kind) if isinstance(kind, str) else None
        if builder is None:
            raise RowError(f"type must be one of {', '.join(MESSAGE_TYPES)}, got {kind!r}", "type")

        raw_ts = row.get("timestamp")
        if raw_ts is None or raw_ts == "":
            raw_ts = row.get("originalTimestamp")
        if raw_ts is None or raw_ts == "":
            if not options.allow_now:
                raise RowError(
                    "timestamp is missing (pass --allow-now to use the time of the import)", "timestamp"
                )
            timestamp: Optional[datetime.datetime] = None
        else:
            try:
                timestamp = parse_timestamp(raw_ts, self._tz)
            except (ValueError, OverflowError) as exc:  # TimestampError, and what int()/float() raise
                raise RowError(_timestamp_reason(self._timestamp_where, raw_ts, exc), "timestamp") from None

        integrations = row.get("integrations")
        if options.integrations is not None:
            if isinstance(integrations, dict):
                integrations = {**integrations, **options.integrations}
            else:
                integrations = options.integrations

        message_id = None if options.from_archive else row.get("messageId")
        if message_id == "":
            message_id = None
        common: dict[str, Any] = {
            "context": row.get("context"),
            "timestamp": timestamp,
            "integrations": integrations,
            "message_id": message_id,
        }
        return kind, builder(row, common)


def _track(row: Mapping[str, Any], common: dict[str, Any]) -> dict[str, Any]:
    user_id, anonymous_id = _identity(row)
    common.update(
        user_id=user_id, anonymous_id=anonymous_id, event=row.get("event"), properties=row.get("properties")
    )
    return common


def _identify(row: Mapping[str, Any], common: dict[str, Any]) -> dict[str, Any]:
    user_id, anonymous_id = _identity(row)
    common.update(user_id=user_id, anonymous_id=anonymous_id, traits=row.get("traits"))
    return common


def _group(row: Mapping[str, Any], common: dict[str, Any]) -> dict[str, Any]:
    user_id, anonymous_id = _identity(row)
    common.update(
        user_id=user_id, anonymous_id=anonymous_id, group_id=row.get("groupId"), traits=row.get("traits")
    )
    return common


def _alias(row: Mapping[str, Any], common: dict[str, Any]) -> dict[str, Any]:
    common.update(previous_id=row.get("previousId"), user_id=row.get("userId"))
    return common


def _view(row: Mapping[str, Any], common: dict[str, Any]) -> dict[str, Any]:
    user_id, anonymous_id = _identity(row)
    common.update(
        user_id=user_id,
        anonymous_id=anonymous_id,
        category=row.get("category"),
        name=row.get("name"),
        properties=row.get("properties"),
    )
    return common
