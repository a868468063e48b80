"""Terminal-safe text: control characters in untrusted strings shown as escapes, never interpreted."""

from __future__ import annotations

import re

__all__ = ["printable", "printable_json"]

# C0 and C1 controls and DEL (a terminal acts on them: escape sequences, cursor moves,
# bells), plus the bidirectional overrides that make text display in another order.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character written as an escape (``"\\x1b"`` for ESC)."""
    return _UNSAFE.sub(_escape, text)


def printable_json(text: str) -> str:
    """JSON text with the control characters ``json.dumps`` leaves raw (DEL, C1, bidi) as ``\\u`` escapes.

    Those characters can only occur inside JSON strings, where the escape means the same character.
    """
    return _UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
