"""Wire limits shared by the client and the local collector (constants only: importing loads nothing)."""

from __future__ import annotations

__all__ = ["MAX_NESTING_DEPTH"]

MAX_NESTING_DEPTH = 32
"""The deepest nesting of JSON objects and arrays allowed in one message.

The message object itself is level 1, so ``{"properties": {"tags": ["a"]}}``
is 3 deep; scalars do not count. A batch body wraps each message in two more
levels (the body object and its ``batch`` list), so a batch of messages at
this limit is 34 deep: within what every common JSON server parses by default
(.NET System.Text.Json and Json.NET stop at 64, Ruby's JSON at 100, serde_json
at 128, PHP at 512, Jackson and Python at about 1,000, Go at 10,000).
"""
