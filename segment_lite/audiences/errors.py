"""The exceptions of audiences: a bad definitions file, unusable inputs, a sync that could not finish."""

from __future__ import annotations

from typing import Optional

from segment_lite.errors import SegmentLiteError

__all__ = ["AudienceInputError", "AudienceSyncError", "DefinitionError"]


class DefinitionError(SegmentLiteError, ValueError):
    """The definitions file is unusable.

    ``line`` (1-based, when known), ``definition`` (the trait or audience name,
    when known) and ``field`` (the path inside it, e.g. ``where.all[1].value``)
    say where; the message repeats them.
    """

    def __init__(
        self,
        reason: str,
        *,
        line: Optional[int] = None,
        definition: Optional[str] = None,
        field: Optional[str] = None,
        path: Optional[str] = None,
    ) -> None:
        where = []
        if path:
            where.append(f"{path}{f':{line}' if line else ''}")
        elif line:
            where.append(f"line {line}")
        if definition:
            where.append(f"definition {definition!r}")
        if field:
            where.append(f"field {field}")
        super().__init__(f"{', '.join(where)}: {reason}" if where else reason)
        self.reason = reason
        self.line = line
        self.definition = definition
        self.field = field


class AudienceInputError(SegmentLiteError, ValueError):
    """An input (events file, collector store, Parquet file) cannot be read."""


class AudienceSyncError(SegmentLiteError):
    """A sync could not deliver every change; what was confirmed is kept, run again to resume."""
