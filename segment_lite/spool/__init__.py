"""Durable delivery: a disk spool that keeps accepted messages across crashes, kills and restarts.

``Client(spool_dir=PATH)`` builds its queue with :func:`spool_factory`; the
``segment-lite spool`` command inspects and drains a spool directory. See
docs/reliability.md for what survives what, and the module docstrings of
``store`` (ownership and the SQLite database) and ``disk`` (the queue).
The names below are imported on first use, so the command line (and platforms
without ``fcntl`` or ``sqlite3``) can import the package cheaply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from segment_lite._lazy import lazy_exports

if TYPE_CHECKING:
    from segment_lite.spool.disk import SYNC_INTERVAL_S, DiskSpool
    from segment_lite.spool.factory import FSYNC_POLICIES, SpoolFactory, check_spool_dir, spool_factory
    from segment_lite.spool.status import SpoolStatus, spool_status

__all__ = [
    "FSYNC_POLICIES",
    "SYNC_INTERVAL_S",
    "DiskSpool",
    "SpoolFactory",
    "SpoolStatus",
    "check_spool_dir",
    "spool_factory",
    "spool_status",
]

_HOMES = {
    "SYNC_INTERVAL_S": "disk",
    "DiskSpool": "disk",
    "FSYNC_POLICIES": "factory",
    "SpoolFactory": "factory",
    "check_spool_dir": "factory",
    "spool_factory": "factory",
    "SpoolStatus": "status",
    "spool_status": "status",
}

__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals(), __all__)
