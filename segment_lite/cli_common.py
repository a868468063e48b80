"""What the sending commands share: destination and progress options, progress display, SIGTERM as Ctrl-C.

The import and ``spool drain`` commands both use it; it imports neither.
"""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import sys
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import IO, Any, Optional, Protocol

from segment_lite.transport import REGION_HOSTS

__all__ = [
    "PROGRESS_MODES",
    "NullProgress",
    "PlainProgress",
    "Progress",
    "SigtermAsInterrupt",
    "Snapshot",
    "TqdmProgress",
    "add_destination_arguments",
    "add_progress_arguments",
    "make_progress",
]

#: How progress is shown (``--progress``): see ``make_progress``.
PROGRESS_MODES = ("auto", "bar", "plain", "none")


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


INSTALL_HINT = "progress bar unavailable: pip install 'segment-lite[cli]' to get one"


@dataclass
class Snapshot:
    """Where an import stands."""

    elapsed_s: float
    rows_read: int
    sent: int
    delivered: int
    rejected: int
    skipped: int
    position: Optional[int] = None  # bytes of the inputs consumed, when their size is known
    total_bytes: Optional[int] = None
    dry_run: bool = False
    skipped_bytes: int = 0  # bytes a resume skipped before this run's first row (part of position)
    skipping_s: float = 0.0  # seconds spent skipping them (part of elapsed_s)

    @property
    def rate(self) -> float:
        """Messages delivered (validated, in a dry run) per second so far."""
        done = self.sent if self.dry_run else self.delivered
        return done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def fraction(self) -> Optional[float]:
        """Share of the input bytes consumed, when the size is known."""
        if not self.total_bytes or self.position is None:
            return None
        return min(1.0, self.position / self.total_bytes)

    @property
    def eta_s(self) -> Optional[float]:
        """Seconds left at this run's pace, when the size is known.

        Rows a resume skipped count as neither done nor time spent: the pace is
        the bytes this run processed over the time since it reached them.
        """
        if not self.total_bytes or self.position is None:
            return None
        done_bytes = self.position - self.skipped_bytes
        working_s = self.elapsed_s - self.skipping_s
        if done_bytes <= 0 or working_s <= 0:
            return None
        return working_s * max(0, self.total_bytes - self.position) / done_bytes


class Progress(Protocol):
    """Receives snapshots while an import runs."""

    interval_s: float

    def update(self, snapshot: Snapshot) -> None:
        """Show ``snapshot`` (called about every ``interval_s`` seconds)."""

    def close(self, snapshot: Snapshot) -> None:
        """Show the final state and release the output."""


def _duration(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))


def describe(snapshot: Snapshot) -> str:
    """A one-line account of ``snapshot``."""
    done_word = "validated" if snapshot.dry_run else "delivered"
    done = snapshot.sent if snapshot.dry_run else snapshot.delivered
    parts = [
        f"{snapshot.rows_read:,} rows read",
        f"{done:,} {done_word}",
        f"{snapshot.rejected:,} rejected",
    ]
    if snapshot.skipped:
        parts.append(f"{snapshot.skipped:,} skipped")
    parts.append(f"{snapshot.rate:,.0f} msg/s")
    fraction = snapshot.fraction
    if fraction is not None:
        parts.append(f"{fraction:.0%}")
        eta = snapshot.eta_s
        if eta is not None:
            parts.append(f"ETA {_duration(eta)}")
    return f"[{_duration(snapshot.elapsed_s)}] " + ", ".join(parts)


class NullProgress:
    """Reports nothing."""

    interval_s = 3600.0

    def update(self, snapshot: Snapshot) -> None:
        """Ignore."""

    def close(self, snapshot: Snapshot) -> None:
        """Ignore."""


class PlainProgress:
    """One line every ``interval_s`` seconds on ``stream`` (stderr), for logs and pipes.

    ``label`` names the command in each line (``segment-lite import: ...``).
    """

    def __init__(
        self, stream: Optional[IO[str]] = None, interval_s: float = 10.0, label: str = "import"
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interval_s = interval_s
        self.label = label

    def update(self, snapshot: Snapshot) -> None:
        """Print a progress line."""
        print(f"segment-lite {self.label}: {describe(snapshot)}", file=self.stream, flush=True)

    def close(self, snapshot: Snapshot) -> None:
        """Nothing to tear down (the summary is printed separately)."""


class TqdmProgress:
    """A tqdm bar over the input bytes (rows when the size is unknown), counts in its postfix."""

    interval_s = 0.25

    def __init__(
        self,
        tqdm_class: Any,
        stream: Optional[IO[str]] = None,
        total_bytes: Optional[int] = None,
        label: str = "import",
    ) -> None:
        self._by_bytes = bool(total_bytes)
        self._bar = tqdm_class(
            total=total_bytes if self._by_bytes else None,
            unit="B" if self._by_bytes else " rows",
            unit_scale=True,
            unit_divisor=1024 if self._by_bytes else 1000,
            file=stream if stream is not None else sys.stderr,
            desc=label,
            dynamic_ncols=True,
            leave=True,
        )

    def update(self, snapshot: Snapshot) -> None:
        """Move the bar and refresh the counts."""
        value = (snapshot.position or 0) if self._by_bytes else snapshot.rows_read
        done = snapshot.sent if snapshot.dry_run else snapshot.delivered
        word = "ok" if snapshot.dry_run else "delivered"
        text = f"read={snapshot.rows_read:,} {word}={done:,} rejected={snapshot.rejected:,}"
        self._bar.set_postfix_str(f"{text} {snapshot.rate:,.0f} msg/s", refresh=False)
        self._bar.update(max(0, value - self._bar.n))  # redraws (tqdm rate-limits its own redraws)

    def close(self, snapshot: Snapshot) -> None:
        """Draw the final state and release the terminal line."""
        self.update(snapshot)
        self._bar.close()


def make_progress(
    mode: str = "auto",
    stream: Optional[IO[str]] = None,
    interval_s: float = 10.0,
    total_bytes: Optional[int] = None,
    label: str = "import",
) -> Progress:
    """Pick the reporter: ``bar`` (tqdm), ``plain`` lines, ``none``, or ``auto``.

    ``auto`` draws a bar when ``stream`` is a terminal and tqdm is installed, says
    once how to install it when it is not, and prints plain lines elsewhere.
    ``label`` names the command (``import``, ``spool drain``) in lines and on the bar.
    """
    out = stream if stream is not None else sys.stderr
    if mode == "none":
        return NullProgress()
    if mode == "plain":
        return PlainProgress(out, interval_s, label)
    is_tty = bool(getattr(out, "isatty", lambda: False)())
    if mode == "bar" or (mode == "auto" and is_tty):
        try:
            from tqdm import tqdm
        except ImportError:
            print(f"segment-lite {label}: {INSTALL_HINT}", file=out, flush=True)
            return PlainProgress(out, interval_s, label)
        return TqdmProgress(tqdm, out, total_bytes, label)
    return PlainProgress(out, interval_s, label)
