"""Variants of segment_lite, to measure one change at a time against the same run.

Each change has a name; a client kind ``lite-json+NAME`` (or ``lite-orjson+NAME``,
or several: ``lite-json+requests+gzip6``) runs segment_lite with it, e.g.
``python -m benchmarks.run --clients reference,lite-json,lite-json+requests --scenarios capped100``.

* ``requests``: the previous default transport, ``RequestsTransport``
  (``requests.Session.post``), instead of ``Urllib3Transport``.
* ``gzip6``: compress request bodies at zlib level 6 instead of
  ``segment_lite.batch_core.GZIP_LEVEL`` (1).
"""

from __future__ import annotations

from typing import Any

__all__ = ["CHANGES", "apply_changes"]

#: The changes that can be measured, and what each one is.
CHANGES = {
    "requests": "RequestsTransport (requests.Session.post) instead of the default Urllib3Transport",
    "gzip6": "gzip level 6 instead of 1",
}


def apply_changes(changes: list[str], options: dict[str, Any]) -> None:
    """Apply ``changes`` to this process, or to ``options`` (``Client`` keyword arguments)."""
    for change in changes:
        if change == "requests":
            from segment_lite.transport import RequestsTransport

            options["transport"] = RequestsTransport
        elif change == "gzip6":
            import segment_lite.batch_core

            segment_lite.batch_core.GZIP_LEVEL = 6  # read at each request
        else:
            raise ValueError(f"unknown change {change!r}")
