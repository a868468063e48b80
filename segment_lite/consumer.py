"""segment-analytics-python's ``consumer`` module names (``post``, ``MAX_MSG_SIZE``).

Patching ``segment_lite.consumer.post`` (as tests written for the reference patch
``segment.analytics.consumer.post``) makes the client's default transport send
every batch through the patch: see ``segment_lite.request``. The delivery
threads themselves are ``segment_lite.pipeline.Worker``.
"""

from __future__ import annotations

from segment_lite.limits import MAX_MESSAGE_BYTES
from segment_lite.request import post

__all__ = ["MAX_MSG_SIZE", "post"]

#: The largest encoded message, as the reference names it.
MAX_MSG_SIZE = MAX_MESSAGE_BYTES
