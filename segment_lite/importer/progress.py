"""Progress of an import: a tqdm bar on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import datetime
import sys
from dataclasses import dataclass
from typing import IO, Any, Optional, Protocol

from segment_lite.importer.constants import PROGRESS_MODES

__all__ = [
    "PROGRESS_MODES",
    "NullProgress",
    "PlainProgress",
    "Progress",
    "Snapshot",
    "TqdmProgress",
    "make_progress",
]

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
