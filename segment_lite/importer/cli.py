"""The ``segment-lite import`` command: argument parsing and the handler around :func:`run_import`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable, Optional

from segment_lite.cli_common import SigtermAsInterrupt, add_destination_arguments, add_progress_arguments

if TYPE_CHECKING:
    from segment_lite.importer.options import ImportOptions
    from segment_lite.importer.state import Checkpoint

__all__ = ["add_arguments", "handle", "main", "options_from_args", "register"]

DESCRIPTION = """\
Send historical events to Segment with their original timestamps.

Inputs are JSON Lines (one Spec message per line; Segment archive exports with
--from-archive) or CSV with a column mapping (--map / --map-file). gzip is
detected by content; "-" reads stdin. Rows without a messageId get one derived
from the file's content and the line number, so a re-run is deduplicated.
Progress is checkpointed after delivery is confirmed; --resume continues.
"""

EPILOG = """\
exit status: 0 done (rejected rows, if any, are in the rejects file; 5 instead
with --fail-on-rejects), 2 unusable options or inputs, 3 stopped by
--max-errors, 4 delivery failed (resume later), 130 interrupted (Ctrl-C),
143 terminated (SIGTERM).

files: FILE.checkpoint.json holds the confirmed progress (--resume continues
from it); FILE.rejects.jsonl holds one JSON line per rejected row, with its
file, line, stage, reason, field and the row itself.

examples:
  segment-lite import events.jsonl.gz --write-key KEY
  segment-lite import events.jsonl.gz --write-key KEY --resume
  segment-lite import signups.csv --type track --set event="Signed Up" \\
      --map userId=user_id,timestamp=created_at,properties.plan=plan \\
      --timezone Europe/Paris --write-key KEY
  segment-lite import export.jsonl --from-archive --dry-run

From Python: run_import, import_rows and ImportOptions in segment_lite.importer,
and send_dataframe in segment_lite.spark for a Spark DataFrame (pip install
"segment-lite[spark]"); their docstrings say more (python -m pydoc
segment_lite.importer, python -m pydoc segment_lite.spark).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the import options to ``parser``."""
    from segment_lite.importer.constants import DEFAULT_CHUNK_SIZE
    from segment_lite.limits import MESSAGE_TYPES

    parser.add_argument(
        "files", nargs="+", metavar="FILE", help="JSON Lines or CSV files (.gz ok); - for stdin"
    )

    dest = parser.add_argument_group("destination")
    add_destination_arguments(dest, "the source's write key (default: $SEGMENT_WRITE_KEY)")
    dest.add_argument(
        "--integrations",
        metavar="JSON",
        help='destinations for every message, e.g. \'{"All": false, "Amplitude": true}\'',
    )

    rows = parser.add_argument_group("reading rows")
    rows.add_argument(
        "--format", choices=("jsonl", "csv"), help="input format (default: by file name; stdin: jsonl)"
    )
    rows.add_argument("--type", choices=MESSAGE_TYPES, help="message type of rows that do not name one")
    rows.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="TARGET=COLUMN,...",
        help="map columns to fields: userId=user_id,event=action,properties.plan=plan; "
        "TARGET:int|float|bool|json converts; properties.*=* takes every other column",
    )
    rows.add_argument(
        "--map-file", metavar="PATH", help='JSON object of mappings: {"userId": "user_id", ...}'
    )
    rows.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="TARGET=VALUE",
        help="a constant field on every message, e.g. event='Signed Up' (VALUE is JSON or text)",
    )
    rows.add_argument(
        "--from-archive",
        action="store_true",
        help="rows are Segment archive events: drop sentAt, messageId and projectId",
    )
    rows.add_argument("--delimiter", help="CSV delimiter (default: , or tab for .tsv)")
    rows.add_argument("--encoding", default="utf-8", help="CSV text encoding (default: utf-8)")

    times = parser.add_argument_group("timestamps")
    times.add_argument(
        "--allow-now",
        action="store_true",
        help="send rows without a timestamp with the import time (default: reject them)",
    )
    times.add_argument("--timezone", metavar="TZ", help="zone of timestamps without an offset (default: UTC)")

    safety = parser.add_argument_group("progress, resume and errors")
    cp = safety.add_mutually_exclusive_group()
    cp.add_argument("--checkpoint", metavar="PATH", help="checkpoint file (default: FILE.checkpoint.json)")
    cp.add_argument("--no-checkpoint", action="store_true", help="keep no checkpoint")
    safety.add_argument("--resume", action="store_true", help="skip the rows the checkpoint confirms")
    rj = safety.add_mutually_exclusive_group()
    rj.add_argument(
        "--rejects", metavar="PATH", help="rejected rows, as JSON Lines (default: FILE.rejects.jsonl)"
    )
    rj.add_argument("--no-rejects", action="store_true", help="only count rejected rows")
    safety.add_argument("--dry-run", action="store_true", help="validate every row, send nothing")
    safety.add_argument(
        "--max-errors",
        type=int,
        metavar="N",
        help="stop once more than N rows were rejected (default: no limit)",
    )
    safety.add_argument(
        "--fail-on-rejects",
        action="store_true",
        help="exit with status 5, not 0, when a completed import rejected rows",
    )
    safety.add_argument(
        "--shard", metavar="I/N", help="import only shard I of N: the rows on lines I, I+N, I+2N, ..."
    )
    safety.add_argument(
        "--id-salt", default="", metavar="TEXT", help="mixed into derived messageIds (default: none)"
    )
    safety.add_argument(
        "--chunk-size",
        type=int,
        default=DEFAULT_CHUNK_SIZE,
        metavar="N",
        help=f"rows per confirmed chunk (default: {DEFAULT_CHUNK_SIZE})",
    )

    perf = parser.add_argument_group("sending")
    perf.add_argument("--gzip", action="store_true", help="gzip request bodies (default: off)")
    perf.add_argument("--threads", type=int, default=1, metavar="N", help="sender threads (default: 1)")
    perf.add_argument("--max-retries", type=int, metavar="N", help="retries per batch (default: 10)")

    out = parser.add_argument_group("output")
    add_progress_arguments(out)
    out.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")


def register(subparsers: Any) -> None:
    """Add the ``import`` subcommand to the ``segment-lite`` parser."""
    parser = subparsers.add_parser(
        "import",
        help="send historical events (JSON Lines, archives, CSV) with their timestamps",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(handler=handle)


def _constants(items: Sequence[str]) -> dict[str, Any]:
    from segment_lite.importer.errors import ImportConfigError

    out: dict[str, Any] = {}
    for item in items:
        target, sep, text = item.partition("=")
        if not sep or not target.strip():
            raise ImportConfigError(f"--set {item!r} must look like TARGET=VALUE")
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = text
        out[target.strip()] = value
    return out


def _error(message: str) -> int:
    print(f"segment-lite import: error: {message}", file=sys.stderr)
    return 2


def _starting_over(checkpoint_path: str, options: ImportOptions) -> str:
    """What starting over means when a checkpoint exists (whether re-sent rows are deduplicated)."""
    from segment_lite.importer.errors import ImportConfigError
    from segment_lite.importer.state import Checkpoint

    try:
        previous = Checkpoint.load(checkpoint_path)
    except ImportConfigError as exc:
        # Never a reason not to start over: the first checkpoint of this run replaces the file.
        return f"{exc}; it cannot be read, so the import starts over and its first checkpoint replaces it"
    if previous is None:
        return f"{checkpoint_path} vanished; starting over"
    if previous.id_salt != options.id_salt:
        return (
            f"{checkpoint_path} was written with another --id-salt; starting over with new messageIds:"
            " rows sent before will arrive again as new events"
        )
    return (
        f"{checkpoint_path} exists; starting over (pass --resume to continue from it;"
        " rows already sent are deduplicated by their messageIds)"
    )


def options_from_args(args: argparse.Namespace) -> ImportOptions:
    """The :class:`ImportOptions` the parsed command line describes; ``ImportConfigError`` if unusable."""
    from segment_lite.importer.errors import ImportConfigError
    from segment_lite.importer.mapping import FieldMapping
    from segment_lite.importer.options import ImportOptions

    integrations: Optional[dict[str, Any]] = None
    if args.integrations:
        try:
            integrations = json.loads(args.integrations)
        except ValueError as exc:
            raise ImportConfigError(f"--integrations is not valid JSON: {exc}") from None
        if not isinstance(integrations, dict):
            raise ImportConfigError(
                '--integrations must be a JSON object, e.g. {"All": false, "Amplitude": true}'
            )
    mapping: Optional[FieldMapping] = None
    if args.map_file:
        mapping = FieldMapping.from_file(args.map_file)
    if args.map:
        extra = FieldMapping.parse(args.map)
        if mapping is not None:
            extra = FieldMapping([*mapping.rules, *extra.rules], mapping.constants)
        mapping = extra
    return ImportOptions(
        write_key=args.write_key,
        host=args.host,
        region=args.region,
        integrations=integrations,
        format=args.format,
        type=args.type,
        mapping=mapping,
        constants=_constants(args.set) or None,
        from_archive=args.from_archive,
        delimiter=args.delimiter,
        encoding=args.encoding,
        allow_now=args.allow_now,
        timezone=args.timezone,
        checkpoint=False if args.no_checkpoint else args.checkpoint,
        resume=args.resume,
        rejects=False if args.no_rejects else args.rejects,
        dry_run=args.dry_run,
        max_errors=args.max_errors,
        fail_on_rejects=args.fail_on_rejects,
        shard=args.shard,
        id_salt=args.id_salt,
        chunk_size=args.chunk_size,
        gzip=args.gzip,
        threads=args.threads,
        max_retries=args.max_retries,
        progress=args.progress,
        progress_interval=args.progress_interval,
    )


def handle(args: argparse.Namespace, *, on_checkpoint: Optional[Callable[[Checkpoint], None]] = None) -> int:
    """Run the import described by ``args``; returns the exit status.

    ``on_checkpoint`` is called after each checkpoint is written (see ``ImportOptions``).
    """
    from segment_lite.importer.errors import ImportConfigError
    from segment_lite.importer.runner import checkpoint_path_of, run_import

    try:
        options = options_from_args(args)
        if on_checkpoint is not None:
            options = dataclasses.replace(options, on_checkpoint=on_checkpoint)
        if not options.resume and not options.dry_run:
            existing = checkpoint_path_of(options, args.files[0])
            if existing is not None and os.path.exists(existing):
                print(f"segment-lite import: note: {_starting_over(existing, options)}", file=sys.stderr)
    except ImportConfigError as exc:
        return _error(str(exc))

    with SigtermAsInterrupt() as sigterm:
        try:
            summary = run_import(args.files, options)
        except ImportConfigError as exc:
            return _error(str(exc))
        except KeyboardInterrupt:
            print("segment-lite import: interrupted", file=sys.stderr)
            return sigterm.exit_status
    if args.json:
        print(json.dumps(summary.as_dict(), indent=2))
    print(summary.format(), file=sys.stderr)
    if summary.status == "interrupted" and sigterm.received:
        return sigterm.exit_status
    return summary.exit_code


def main(
    argv: Optional[Sequence[str]] = None, *, on_checkpoint: Optional[Callable[[Checkpoint], None]] = None
) -> int:
    """``python -m segment_lite.importer``: the import command on its own.

    ``on_checkpoint`` is called after each checkpoint is written (see ``ImportOptions``).
    """
    parser = argparse.ArgumentParser(
        prog="segment-lite import",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return handle(parser.parse_args(argv), on_checkpoint=on_checkpoint)
