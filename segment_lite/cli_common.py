"""What the sending subcommands share: the destination and progress options, and SIGTERM read as Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
from types import FrameType, TracebackType
from typing import Any, Optional

from segment_lite.importer.constants import PROGRESS_MODES
from segment_lite.transport import REGION_HOSTS

__all__ = ["SigtermAsInterrupt", "add_destination_arguments", "add_progress_arguments"]


def add_destination_arguments(container: argparse._ActionsContainer, write_key_help: str) -> None:
    """Add ``--write-key`` (default ``$SEGMENT_WRITE_KEY``) and either ``--host`` or ``--region``.

    ``write_key_help`` says which key the command wants; it should end with
    ``(default: $SEGMENT_WRITE_KEY)``.
    """
    container.add_argument("--write-key", default=os.environ.get("SEGMENT_WRITE_KEY"), help=write_key_help)
    where = container.add_mutually_exclusive_group()
    where.add_argument("--host", help="API host, e.g. http://127.0.0.1:8787 for a local collector")
    where.add_argument("--region", choices=tuple(REGION_HOSTS), help="Segment region (default: us)")


def add_progress_arguments(container: argparse._ActionsContainer) -> None:
    """Add ``--progress`` (auto, bar, plain or none) and ``--progress-interval``, for ``make_progress``."""
    container.add_argument(
        "--progress",
        choices=PROGRESS_MODES,
        default="auto",
        help="auto: a bar on a terminal (needs segment-lite[cli]), plain lines otherwise (default: auto)",
    )
    container.add_argument(
        "--progress-interval",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds between plain progress lines (default: 10)",
    )


class SigtermAsInterrupt:
    """While entered, SIGTERM raises ``KeyboardInterrupt`` as Ctrl-C does, so one path stops the work.

    ``received`` tells the two apart afterwards, and ``exit_status`` is the
    conventional status for the one that came. Outside the main thread, where
    Python cannot set signal handlers, it does nothing. The previous handler
    is put back on exit.
    """

    def __init__(self) -> None:
        self.received = False
        self._previous: Any = None

    @property
    def exit_status(self) -> int:
        """143 after SIGTERM, 130 after Ctrl-C (128 plus the signal's number)."""
        return 143 if self.received else 130

    def _on_sigterm(self, signum: int, frame: Optional[FrameType]) -> None:
        self.received = True
        raise KeyboardInterrupt

    def __enter__(self) -> SigtermAsInterrupt:
        try:
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        except ValueError:  # not the main thread
            self._previous = None
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
