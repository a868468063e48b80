"""The exceptions of the importer (defined in ``segment_lite.errors`` with every other; named here too)."""

from __future__ import annotations

from segment_lite.errors import ImportConfigError, ImportDeliveryError, RowError

__all__ = ["ImportConfigError", "ImportDeliveryError", "RowError"]
