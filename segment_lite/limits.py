"""Segment's wire limits and message types, defined once (constants only: importing loads nothing).

The client, the sender, the local collector and the importer all read these;
none defines its own copy.
"""

from __future__ import annotations

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_BATCH_MESSAGES",
    "MAX_MESSAGE_BYTES",
    "MAX_MESSAGE_ID_CHARS",
    "MAX_NESTING_DEPTH",
    "MESSAGE_TYPES",
]

#: The Spec message types, in the order the collector and ``--type`` list them.
MESSAGE_TYPES = ("identify", "track", "page", "screen", "group", "alias")

MAX_MESSAGE_BYTES = 32 * 1024
"""Segment's limit for one message, encoded as JSON: 32 KB."""

MAX_BATCH_BYTES = 500 * 1024
"""Segment's limit for one batch request body (before gzip): 500 KB."""

MAX_BATCH_MESSAGES = 2500
"""Segment's limit for the messages in one batch request."""

MAX_MESSAGE_ID_CHARS = 100
"""The longest ``messageId`` Segment accepts, in characters."""

MAX_NESTING_DEPTH = 32
"""The deepest nesting of JSON objects and arrays allowed in one message.

The message object itself is level 1, so ``{"properties": {"tags": ["a"]}}``
is 3 deep; scalars do not count. A batch body wraps each message in two more
levels (the body object and its ``batch`` list), so a batch of messages at
this limit is 34 deep: within what every common JSON server parses by default
(.NET System.Text.Json and Json.NET stop at 64, Ruby's JSON at 100, serde_json
at 128, PHP at 512, Jackson and Python at about 1,000, Go at 10,000).
"""
