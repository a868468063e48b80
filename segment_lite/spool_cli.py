"""The ``segment-lite spool`` commands: ``status`` of a spool directory, and ``drain`` of what it holds."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Optional

from segment_lite.cli_common import SigtermAsInterrupt, add_destination_arguments, add_progress_arguments

__all__ = ["register"]

EPILOG = """\
exit status: 0 every message found was delivered, 2 unusable options or directory,
4 messages left undelivered (the server was unreachable until --timeout; they stay
in the spool for a later run), 5 messages dropped (refused by the server, or an
unreadable spool database), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

DRAIN_DESCRIPTION = """\
Deliver the messages that stopped or crashed processes left in a spool directory
(the spool_dir they were given), e.g. from a cron job or after an outage. Only
directories whose process is gone and that were written with the same write key
are taken; a running process delivers its own. Messages keep their messageId
(Segment deduplicates re-sent ones) and get a fresh sentAt.
"""


def register(subparsers: Any) -> None:
    """Add ``spool status`` and ``spool drain`` to the ``segment-lite`` argument parser."""
    spool = subparsers.add_parser(
        "spool",
        help="inspect a disk spool, or deliver what crashed processes left in it",
        description="Inspect or drain a disk spool (Client(spool_dir=...)).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = spool.add_subparsers(dest="spool_command", metavar="COMMAND")
    spool.set_defaults(handler=lambda args: _usage(spool))

    status = commands.add_parser(
        "status",
        help="undelivered messages, bytes and the age of the oldest, per owner directory",
        description="Show what a spool directory holds, without changing it.",
    )
    status.add_argument("dir", metavar="DIR", help="the spool directory (a client's spool_dir)")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(handler=_status)

    drain = commands.add_parser(
        "drain",
        help="deliver what stopped or crashed processes left in a spool directory",
        description=DRAIN_DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    drain.add_argument("dir", metavar="DIR", help="the spool directory (a client's spool_dir)")
    add_destination_arguments(
        drain, "the write key the messages were spooled with (default: $SEGMENT_WRITE_KEY)"
    )
    drain.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="give up after this long; what is undelivered stays in the spool (default: no limit)",
    )
    drain.add_argument("--gzip", action="store_true", help="gzip request bodies (default: off)")
    drain.add_argument("--threads", type=int, default=1, metavar="N", help="sender threads (default: 1)")
    add_progress_arguments(drain)
    drain.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    drain.set_defaults(handler=_drain)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _error(command: str, message: str) -> int:
    print(f"segment-lite spool {command}: error: {message}", file=sys.stderr)
    return 2


def _size(nbytes: int) -> str:
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _age(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


def _status(args: argparse.Namespace) -> int:
    from segment_lite.spool.status import spool_status

    if not os.path.isdir(args.dir):
        return _error("status", f"{args.dir} is not a directory")
    status = spool_status(args.dir)
    if args.json:
        print(json.dumps(status.as_dict(), indent=2))
        return 0
    rows = [("DIRECTORY", "STATE", "MESSAGES", "BYTES", "OLDEST", "READABLE")]
    for owner in status.owners:
        state = f"live (pid {owner.pid})" if owner.live else "orphaned"
        rows.append(
            (
                owner.name,
                state,
                f"{owner.messages:,}",
                _size(owner.nbytes),
                _age(owner.oldest_age_s),
                "no" if owner.unreadable else "yes",
            )
        )
    if len(rows) > 1:
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    oldest = status.oldest_age_s
    print(
        f"{status.messages:,} undelivered message(s), {_size(status.nbytes)} in {len(status.owners)} "
        f"director{'y' if len(status.owners) == 1 else 'ies'} under {args.dir}"
        + ("" if oldest is None else f"; the oldest was accepted {_age(oldest)} ago")
    )
    return 0


def _drain(args: argparse.Namespace) -> int:
    from segment_lite.cli_common import Snapshot, make_progress
    from segment_lite.client import Client
    from segment_lite.errors import SegmentLiteError
    from segment_lite.limits import MAX_BATCH_MESSAGES
    from segment_lite.spool.disk import DiskSpool
    from segment_lite.spool.factory import key_fingerprint
    from segment_lite.spool.status import spool_status

    if not args.write_key:
        return _error("drain", "--write-key is required (or set $SEGMENT_WRITE_KEY)")
    if not os.path.isdir(args.dir):
        return _error("drain", f"{args.dir} is not a directory")
    if args.threads < 1:
        return _error("drain", f"--threads must be at least 1, got {args.threads}")
    fingerprint = key_fingerprint(args.write_key)
    before = spool_status(args.dir)
    skipped_live = [o for o in before.owners if o.live and o.messages]
    other_key = [
        o for o in before.owners if not o.live and o.messages and fingerprint not in o.write_key_fingerprints
    ]
    if skipped_live:
        print(
            f"segment-lite spool drain: note: {sum(o.messages for o in skipped_live):,} message(s) belong to "
            f"{len(skipped_live)} running process(es), which deliver them; left alone",
            file=sys.stderr,
        )
    if other_key:
        print(
            f"segment-lite spool drain: note: {sum(o.messages for o in other_key):,} message(s) in "
            f"{len(other_key)} director(ies) were spooled with another write key; left alone "
            "(drain them with that key)",
            file=sys.stderr,
        )

    try:
        client = Client(
            args.write_key,
            host=args.host,
            region=args.region,
            gzip=args.gzip,
            thread=args.threads,
            upload_size=500,
            max_batch_size=MAX_BATCH_MESSAGES,  # bigger batches while draining a backlog
            upload_interval=0.05,
            spool_dir=args.dir,
            shutdown_timeout=0,
        )
    except SegmentLiteError as exc:
        return _error("drain", str(exc))
    spool = client.queue
    assert isinstance(spool, DiskSpool)
    total = spool.recovered_count()
    total_bytes = spool.disk_bytes()
    progress = make_progress(
        args.progress, sys.stderr, args.progress_interval, total_bytes or None, label="spool drain"
    )
    started = time.monotonic()

    def snapshot() -> Snapshot:
        stats = client.stats()
        dropped = stats["dropped"]
        taken = total - spool.qsize()
        return Snapshot(
            elapsed_s=time.monotonic() - started,
            rows_read=taken,
            sent=taken,
            delivered=stats["delivered"],
            rejected=dropped["rejected"] + dropped["retries_exhausted"],
            skipped=dropped["spool_corrupt"],
            position=max(0, total_bytes - spool.disk_bytes()),
            total_bytes=total_bytes or None,
        )

    deadline = None if args.timeout is None else started + args.timeout
    settled = interrupted = False
    sigterm = SigtermAsInterrupt()
    try:
        with sigterm:
            while True:
                wait = progress.interval_s
                if deadline is not None:
                    wait = min(wait, max(0.0, deadline - time.monotonic()))
                settled = client.flush(timeout=wait)
                if settled or (deadline is not None and time.monotonic() >= deadline):
                    break
                progress.update(snapshot())
    except KeyboardInterrupt:
        interrupted = True
    finally:
        client.shutdown(timeout=0)  # whatever is undelivered stays in the spool
    final = snapshot()
    progress.close(final)
    stats = client.stats()
    summary = {
        "directory": args.dir,
        "found": total,
        "delivered": stats["delivered"],
        "rejected": stats["dropped"]["rejected"] + stats["dropped"]["retries_exhausted"],
        "unreadable": stats["dropped"]["spool_corrupt"],
        "left_in_spool": stats["left_in_spool"],
        "skipped_live": sum(o.messages for o in skipped_live),
        "skipped_other_key": sum(o.messages for o in other_key),
        "elapsed_s": round(final.elapsed_s, 3),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    print(
        f"segment-lite spool drain: delivered {summary['delivered']:,} of {total:,} message(s) found; "
        f"{summary['rejected']:,} rejected, {summary['unreadable']:,} unreadable, "
        f"{summary['left_in_spool']:,} left in the spool",
        file=sys.stderr,
    )
    if interrupted:
        print("segment-lite spool drain: interrupted", file=sys.stderr)
        return sigterm.exit_status
    if not settled or summary["left_in_spool"]:
        return 4
    return 5 if summary["rejected"] or summary["unreadable"] else 0
