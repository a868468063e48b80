"""What an import did: the counts, how it ended, its exit status, and a report that only says true things."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = ["EXIT_CODES", "EXIT_REJECTED", "ImportSummary"]

#: Exit status by how the import ended.
EXIT_CODES = {"completed": 0, "max_errors": 3, "delivery_failed": 4, "interrupted": 130}
#: Exit status of a completed import that rejected rows, with ``fail_on_rejects`` (``--fail-on-rejects``).
EXIT_REJECTED = 5


@dataclass
class ImportSummary:
    """What an import did.

    ``sent`` counts messages handed to the client (in a dry run: validated);
    ``delivered`` those the server accepted; ``rejected`` rows refused before
    sending (unreadable, invalid); ``rejected_by_server`` messages the server
    refused; ``undelivered`` messages sent but neither delivered nor rejected
    because the import stopped (delivery failure, interruption); ``filtered``
    rows a ``before_send`` hook dropped. ``status`` is ``completed``,
    ``max_errors``, ``delivery_failed`` or ``interrupted``; ``fail_on_rejects``
    makes a completed import that rejected rows exit with :data:`EXIT_REJECTED`.
    ``partitions`` counts the DataFrame partitions sent (Spark; 0 otherwise).
    """

    files: list[str] = field(default_factory=list)
    rows_read: int = 0
    sent: int = 0
    delivered: int = 0
    rejected: int = 0
    rejected_by_server: int = 0
    undelivered: int = 0
    skipped_resume: int = 0
    skipped_shard: int = 0
    filtered: int = 0
    elapsed_s: float = 0.0
    dry_run: bool = False
    status: str = "completed"
    error: Optional[str] = None
    checkpoint: Optional[str] = None
    rejects: Optional[str] = None
    shard: Optional[tuple[int, int]] = None
    fail_on_rejects: bool = False
    partitions: int = 0

    @property
    def messages_per_second(self) -> float:
        """Delivered (in a dry run: validated) messages per second of the whole run."""
        done = self.sent if self.dry_run else self.delivered
        return done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def rejected_total(self) -> int:
        """Rows rejected before sending plus messages the server rejected."""
        return self.rejected + self.rejected_by_server

    @property
    def exit_code(self) -> int:
        """0 completed, 3 stopped by ``max_errors``, 4 delivery failed, 130 interrupted; 5 completed
        with rejected rows when ``fail_on_rejects`` is set."""
        if self.status == "completed" and self.fail_on_rejects and self.rejected_total:
            return EXIT_REJECTED
        return EXIT_CODES.get(self.status, 1)

    def as_dict(self) -> dict[str, Any]:
        """The summary as plain JSON values."""
        return {
            "status": self.status,
            "exit_code": self.exit_code,
            "files": list(self.files),
            "rows_read": self.rows_read,
            "sent": self.sent,
            "delivered": self.delivered,
            "rejected": self.rejected,
            "rejected_by_server": self.rejected_by_server,
            "undelivered": self.undelivered,
            "skipped_resume": self.skipped_resume,
            "skipped_shard": self.skipped_shard,
            "filtered": self.filtered,
            "partitions": self.partitions,
            "elapsed_s": round(self.elapsed_s, 3),
            "messages_per_second": round(self.messages_per_second, 1),
            "dry_run": self.dry_run,
            "error": self.error,
            "checkpoint": self.checkpoint,
            "rejects": self.rejects,
            "shard": None if self.shard is None else f"{self.shard[0]}/{self.shard[1]}",
        }

    def _title(self) -> str:
        if self.status != "completed":
            return {
                "max_errors": "import stopped: too many rejected rows (--max-errors)",
                "delivery_failed": "import stopped: delivery failed",
                "interrupted": "import interrupted",
            }.get(self.status, self.status)
        title = "dry run complete: nothing was sent" if self.dry_run else "import complete"
        if self.rejected_total:
            considered = self.rows_read - self.skipped_resume - self.skipped_shard
            title += f", but {self.rejected_total:,} of {considered:,} rows were rejected"
        return title

    def _undelivered_hint(self) -> str:
        if self.partitions:
            return "from partitions stopped by max_errors: send the DataFrame again"
        if self.checkpoint is not None:
            return "resume to send them"
        return "no checkpoint was kept: run the import again; what was delivered is deduplicated"

    def format(self) -> str:
        """A short human-readable report."""
        lines = [f"segment-lite import: {self._title()}"]
        if self.error:
            lines.append(f"  error:             {self.error}")
        if self.partitions:
            lines.append(f"  partitions:        {self.partitions:,}")
        lines.append(f"  rows read:         {self.rows_read:,}")
        if self.dry_run:
            lines.append(f"  valid:             {self.sent:,}")
        else:
            lines.append(f"  sent:              {self.sent:,}")
            lines.append(f"  delivered:         {self.delivered:,}")
        lines.append(f"  rejected:          {self.rejected:,}")
        if self.rejected_by_server:
            lines.append(f"  rejected (server): {self.rejected_by_server:,}")
        if self.undelivered:
            lines.append(f"  undelivered:       {self.undelivered:,} ({self._undelivered_hint()})")
        if self.filtered:
            lines.append(f"  filtered:          {self.filtered:,} (by a before_send hook)")
        if self.skipped_resume:
            lines.append(f"  skipped (resume):  {self.skipped_resume:,}")
        if self.shard is not None:
            lines.append(f"  skipped (shard {self.shard[0]}/{self.shard[1]}): {self.skipped_shard:,}")
        lines.append(f"  elapsed:           {self.elapsed_s:.2f} s ({self.messages_per_second:,.0f} msg/s)")
        if self.rejects and self.rejected_total:
            lines.append(f"  rejects file:      {self.rejects}")
        if self.checkpoint:
            lines.append(f"  checkpoint:        {self.checkpoint}")
        return "\n".join(lines)
