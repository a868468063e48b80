"""``python -m segment_lite.importer FILE...``: the same as ``segment-lite import FILE...``."""

from __future__ import annotations

import sys

from segment_lite.importer.cli import main

if __name__ == "__main__":
    sys.exit(main())
