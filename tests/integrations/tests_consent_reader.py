"""A consent reader importable by a dotted path, as Django settings name it."""

from __future__ import annotations

from segment_lite.privacy import onetrust_consent

read_onetrust = onetrust_consent({"C0001": "Necessary", "C0002": "Analytics"})
