"""The exceptions of the importer: a bad row, a bad setup, a delivery that could not finish."""

from __future__ import annotations

from typing import Optional

from segment_lite.errors import SegmentLiteError

__all__ = ["ImportConfigError", "ImportDeliveryError", "RowError"]


class RowError(SegmentLiteError, ValueError):
    """One input row cannot become a message; ``field`` is the message field at fault, when known.

    The importer writes it to the rejects file and goes on with the next row.
    """

    def __init__(self, reason: str, field: Optional[str] = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


class ImportConfigError(SegmentLiteError, ValueError):
    """The options or the inputs of an import are unusable (unknown column type, bad mapping,
    a checkpoint that belongs to other files, ...). Nothing is sent."""


class ImportDeliveryError(SegmentLiteError):
    """Messages could not be delivered (retries exhausted, write key refused, ...).

    Progress confirmed before the failure is kept in the checkpoint; resume later.
    """
