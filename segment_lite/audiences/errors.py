"""The exceptions of audiences: a bad definitions file, unusable inputs, a sync that could not finish.

They are defined in ``segment_lite.errors``, with every other exception of the package.
"""

from __future__ import annotations

from segment_lite.errors import AudienceInputError, AudienceSyncError, DefinitionError

__all__ = ["AudienceInputError", "AudienceSyncError", "DefinitionError"]
