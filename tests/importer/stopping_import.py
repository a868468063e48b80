"""Run the import command, stopping it at a known point: ``python stopping_import.py ACTION=K ARGS...``.

``exit-after-checkpoints=K`` exits at once (``os._exit(86)``, like a kill) right after the
K-th checkpoint is written; ``sigint-after-checkpoints=K`` sends the process SIGINT there
(Ctrl-C), ``sigterm-after-checkpoints=K`` SIGTERM. The import's own ``on_checkpoint`` callback is the seam: nothing in the shipped
code knows about tests.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Callable

from segment_lite.importer.cli import main
from segment_lite.importer.state import Checkpoint

CRASH_STATUS = 86


def stop_after(spec: str) -> Callable[[Checkpoint], None]:
    """The ``on_checkpoint`` callback for ``ACTION=K``."""
    action, _, count = spec.partition("=")
    signals = {"sigint-after-checkpoints": signal.SIGINT, "sigterm-after-checkpoints": signal.SIGTERM}
    if (action != "exit-after-checkpoints" and action not in signals) or not count.isdigit():
        raise SystemExit(f"unknown stop spec {spec!r}")
    written = [0]

    def on_checkpoint(checkpoint: Checkpoint) -> None:
        written[0] += 1
        if written[0] != int(count):
            return
        if action == "exit-after-checkpoints":
            os._exit(CRASH_STATUS)
        os.kill(os.getpid(), signals[action])

    return on_checkpoint


if __name__ == "__main__":
    sys.exit(main(sys.argv[2:], on_checkpoint=stop_after(sys.argv[1])))
