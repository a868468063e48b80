"""The ``segment-lite audiences compute|preview|sync`` commands (DuckDB is imported only when one runs)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from segment_lite.cli_common import SigtermAsInterrupt, add_destination_arguments, add_progress_arguments

__all__ = ["register"]

DESCRIPTION = """\
Computed traits, audiences and attribution from your own events.

DEFINITIONS is a YAML or JSON file of traits and audiences (see
docs/audiences.md). INPUTs are JSON Lines files (.gz and Segment archives
included), collector stores (.db/.sqlite, from `segment-lite serve --db`) or
Parquet files. --now fixes the moment windows are measured from.

  compute  print every user's values as JSON Lines
  preview  audience sizes, sample members and a few users' traits
  serve    the same as a page, computed from a collector's store on each load
  sync     send each changed user one identify call (state: DEFINITIONS.state.db)
"""

EPILOG = """\
examples:
  segment-lite audiences preview definitions.yaml events.jsonl --now 2024-06-01T00:00:00Z
  segment-lite audiences sync definitions.yaml events.jsonl --write-key KEY --dry-run
  segment-lite audiences sync definitions.yaml events.jsonl --host http://127.0.0.1:8787 --write-key K

exit status: 0 done, 2 unusable definitions or inputs, 4 delivery failed (run
the same sync again to resume), 130 interrupted, 143 terminated.
Needs pip install "segment-lite[audiences]" (DuckDB, PyYAML).
"""


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("definitions", metavar="DEFINITIONS", help="traits and audiences (YAML or JSON)")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="events: .jsonl(.gz), .parquet, .db")
    parser.add_argument("--now", metavar="TIME", help="ISO 8601 moment to compute at (default: the clock)")
    parser.add_argument(
        "--input-format", choices=("jsonl", "parquet", "collector"), help="input kind (default: by name)"
    )
    parser.add_argument("--threads", type=int, metavar="N", help="DuckDB threads (default: all cores)")


def register(subparsers: Any) -> None:
    """Add the ``audiences`` subcommand to the ``segment-lite`` parser."""
    parser = subparsers.add_parser(
        "audiences",
        help="compute traits and audiences from events; sync them to Segment",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="audiences_command", metavar="ACTION")
    compute = actions.add_parser("compute", help="print every user's computed values as JSON Lines")
    _common(compute)
    compute.add_argument("--all-keys", action="store_true", help="include traits marked sync: false")
    compute.set_defaults(handler=_compute)
    preview = actions.add_parser("preview", help="audience sizes, sample members and users' traits")
    _common(preview)
    preview.add_argument("--sample", type=int, default=5, metavar="N", help="members shown per audience")
    preview.add_argument("--user", action="append", default=[], metavar="ID", help="show this user's values")
    preview.add_argument("--json", action="store_true", help="print the preview as JSON")
    preview.set_defaults(handler=_preview)
    sync = actions.add_parser("sync", help="send each changed user one identify (resumable)")
    _common(sync)
    dest = sync.add_argument_group("destination")
    add_destination_arguments(dest, "the source's write key (default: $SEGMENT_WRITE_KEY)")
    sync.add_argument("--state", metavar="PATH", help="sync state (default: DEFINITIONS.state.db)")
    sync.add_argument("--dry-run", action="store_true", help="print the changes, send nothing")
    sync.add_argument("--chunk-size", type=int, metavar="N", help="messages per confirmed chunk")
    add_progress_arguments(sync)
    sync.add_argument("--json", action="store_true", help="print the summary as JSON")
    sync.set_defaults(handler=_sync)
    serve = actions.add_parser("serve", help="a preview page computed from a collector's stored events")
    serve.add_argument("definitions", metavar="DEFINITIONS", help="traits and audiences (YAML or JSON)")
    serve.add_argument(
        "--db", required=True, metavar="PATH", help="the store of `segment-lite serve --db PATH`"
    )
    serve.add_argument("--port", type=int, default=8788, help="port on 127.0.0.1 (default: 8788)")
    serve.add_argument("--now", metavar="TIME", help="ISO 8601 moment to compute at (default: the clock)")
    serve.set_defaults(handler=_serve)
    parser.set_defaults(handler=lambda args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _fail(message: str) -> int:
    print(f"segment-lite audiences: error: {message}", file=sys.stderr)
    return 2


def _guarded(run: Any, args: argparse.Namespace) -> int:
    try:
        from segment_lite.audiences.errors import AudienceInputError, AudienceSyncError, DefinitionError
        from segment_lite.importer import ImportConfigError
    except ModuleNotFoundError as exc:
        return _fail(f"{exc.name} is missing: pip install 'segment-lite[audiences]'")
    try:
        import duckdb  # noqa: F401
        import yaml  # noqa: F401
    except ModuleNotFoundError as exc:
        return _fail(f"{exc.name} is missing: pip install 'segment-lite[audiences]'")
    try:
        return int(run(args))
    except (DefinitionError, AudienceInputError, AudienceSyncError, ImportConfigError, ValueError) as exc:
        return _fail(str(exc))


def _compute(args: argparse.Namespace) -> int:
    def run(a: argparse.Namespace) -> int:
        from segment_lite.audiences.compute import compute

        result = compute(a.definitions, a.inputs, now=a.now, input_format=a.input_format, threads=a.threads)
        keys = result.keys if a.all_keys else result.synced_keys
        out = sys.stdout
        for uid, values in result.users.items():
            row = {"userId": uid, **{k: values[k] for k in keys}}
            out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
        print(
            f"segment-lite audiences: {len(result.users):,} users from {result.inputs.used:,} events"
            f" in {result.elapsed_s:.2f} s; skipped {result.inputs.skipped or 'none'}",
            file=sys.stderr,
        )
        return 0

    return _guarded(run, args)


def _preview(args: argparse.Namespace) -> int:
    def run(a: argparse.Namespace) -> int:
        from segment_lite.audiences.compute import compute
        from segment_lite.audiences.preview import preview_data

        result = compute(a.definitions, a.inputs, now=a.now, input_format=a.input_format, threads=a.threads)
        data = preview_data(result, a.sample, a.user)
        if a.json:
            print(json.dumps(data, indent=2, ensure_ascii=False))
            return 0
        print(f"{data['users']:,} users at {data['now']} (events: {data['inputs']})")
        for audience in data["audiences"]:
            print(
                f"  {audience['key']:<30} {audience['size']:>8,}  e.g. {', '.join(audience['sample']) or '-'}"
            )
        for uid, values in data["values"].items():
            print(f"\n{uid}:")
            for key, value in (values or {}).items():
                print(f"  {key:<30} {json.dumps(value)}")
        return 0

    return _guarded(run, args)


def _serve(args: argparse.Namespace) -> int:
    def run(a: argparse.Namespace) -> int:
        from segment_lite.audiences.preview import PreviewServer

        server = PreviewServer(a.definitions, a.db, port=a.port, now=a.now)
        print(f"segment-lite audiences: preview of {a.definitions} over {a.db} at {server.url}/", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
        return 0

    return _guarded(run, args)


def _sync(args: argparse.Namespace) -> int:
    def run(a: argparse.Namespace) -> int:
        from segment_lite.audiences.sync import sync

        if not a.dry_run and not a.write_key:
            return _fail("--write-key (or $SEGMENT_WRITE_KEY) is required, except with --dry-run")
        progress = "none" if a.json else a.progress
        with SigtermAsInterrupt() as signals:
            try:
                summary = sync(
                    a.definitions,
                    a.inputs,
                    write_key=a.write_key or "dry-run",
                    host=a.host,
                    region=a.region,
                    state=a.state,
                    now=a.now,
                    dry_run=a.dry_run,
                    input_format=a.input_format,
                    progress=progress,
                    progress_interval=a.progress_interval,
                    chunk_size=a.chunk_size,
                    threads=a.threads,
                )
            except KeyboardInterrupt:
                print(
                    "segment-lite audiences: interrupted; run the same sync again to resume", file=sys.stderr
                )
                return signals.exit_status
        if a.dry_run and not a.json:
            for change in summary.changes:
                print(change.describe())
        if a.json:
            print(json.dumps(summary.as_dict(), indent=2))
        else:
            if summary.delivery is not None and summary.status != "completed":
                print(summary.delivery.format(), file=sys.stderr)
            print(summary.format(), file=sys.stderr)
        return signals.exit_status if summary.status == "interrupted" else summary.exit_code

    return _guarded(run, args)
