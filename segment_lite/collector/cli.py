"""The collector's subcommands: ``serve``, ``events``, ``tail`` and ``demo``."""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Optional, TextIO

from segment_lite.collector.processing import replace_non_finite
from segment_lite.collector.table import format_row, format_violations, header
from segment_lite.collector.text import printable_json
from segment_lite.errors import FrameworkNotInstalledError
from segment_lite.limits import MESSAGE_TYPES

if TYPE_CHECKING:
    from segment_lite.collector.store import EventStore, StoredEvent

__all__ = ["register"]

DEFAULT_DB = "events.db"
DEFAULT_PORT = 8787


def register(subparsers: Any) -> None:
    """Add the collector's subcommands to the ``segment-lite`` argument parser."""
    _add_serve(subparsers)
    _add_events(subparsers)
    _add_tail(subparsers)
    demo = subparsers.add_parser(
        "demo",
        help="send a sample session through the client to an embedded collector and show it",
        description=(
            "Start a collector on a free loopback port, send a realistic session through "
            "segment_lite.Client, and print what the collector stored."
        ),
    )
    demo.add_argument(
        "--db",
        default=None,
        metavar="FILE",
        help="keep the session's events in this SQLite file (default: a temporary database, deleted)",
    )
    demo.set_defaults(handler=_run_demo)


# -- serve ----------------------------------------------------------------------


def _add_serve(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run a local Segment Tracking API collector with a debugger page",
        description=(
            "Run a local Segment Tracking API collector. Point a client's host at the printed URL; "
            "open the same URL in a browser for the live debugger. Not a production ingestion service."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)")
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to bind; 0 picks a free one (default: {DEFAULT_PORT})",
    )
    p.add_argument(
        "--db",
        default=DEFAULT_DB,
        metavar="PATH",
        help=f"SQLite file to store events in (default: {DEFAULT_DB})",
    )
    p.add_argument(
        "--ephemeral",
        action="store_true",
        help="store events in a private temporary database deleted on exit, ignoring --db (default: off)",
    )
    p.add_argument(
        "--write-key",
        action="append",
        dest="write_keys",
        metavar="KEY",
        help="accept only this write key; repeat for several (default: any key, or none, is accepted)",
    )
    p.add_argument(
        "--quiet", action="store_true", help="do not log each request to stderr (default: log them)"
    )
    oauth = p.add_argument_group("OAuth mode (needs the [oauth] extra)")
    oauth.add_argument(
        "--oauth-public-key",
        metavar="PEM_FILE",
        help="issue access tokens at /token for client assertions signed with the matching private key, "
        "and require them as Bearer tokens (default: off)",
    )
    oauth.add_argument(
        "--oauth-token-lifetime",
        type=int,
        default=3600,
        metavar="SECONDS",
        help="lifetime of issued access tokens (default: 3600)",
    )
    p.add_argument(
        "--plan",
        metavar="PLAN",
        help="check each stored event against this tracking plan and record its violations "
        "(shown by the debugger page and `events`; needs the plan extra) (default: none)",
    )
    faults = p.add_argument_group("fault injection")
    faults.add_argument(
        "--fail-count", type=int, default=0, metavar="N", help="fail the first N requests (default: 0)"
    )
    faults.add_argument(
        "--fail-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="after those, fail each request with probability P, 0 to 1 (default: 0)",
    )
    faults.add_argument(
        "--fail-status",
        type=int,
        default=503,
        metavar="CODE",
        help="status of failed requests (default: 503)",
    )
    faults.add_argument(
        "--retry-after",
        default=None,
        metavar="VALUE",
        help="Retry-After header on failed requests: seconds, or an HTTP-date (default: none)",
    )
    faults.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="N",
        help="random seed for --fail-rate, for repeatable runs (default: random)",
    )
    faults.add_argument(
        "--delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="delay answers by SECONDS (default: 0)",
    )
    faults.add_argument(
        "--delay-count",
        type=int,
        default=None,
        metavar="N",
        help="delay only the first N requests (default: every request when --delay is set)",
    )
    faults.add_argument(
        "--reset-count",
        type=int,
        default=0,
        metavar="N",
        help="reset the connection (TCP RST, no answer) on the first N requests (default: 0)",
    )
    p.set_defaults(handler=_serve)


def _retry_after_value(value: Optional[str]) -> Any:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return value


def _serve(args: argparse.Namespace) -> int:
    import sqlite3

    try:
        from segment_lite.collector.server import Collector, is_loopback_host
        from segment_lite.collector.settings import Auth, CollectorLimits, Faults
    except FrameworkNotInstalledError as exc:  # h11, the collector extra
        print(f"error: {exc}", file=sys.stderr)
        return 1

    if not is_loopback_host(args.host):
        print(
            f"warning: binding to {args.host} exposes the collector (and every event it stores) "
            "to other machines; it has no access control beyond write keys",
            file=sys.stderr,
        )

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    annotators = []
    if args.plan:
        try:
            from segment_lite.plan import PlanAnnotator

            annotators.append(PlanAnnotator(args.plan))
        except ModuleNotFoundError as exc:
            print(
                f"error: --plan needs {exc.name} (the plan extra): pip install 'segment-lite[plan]'",
                file=sys.stderr,
            )
            return 1
        except ValueError as exc:  # PlanError
            print(f"error: cannot use the plan: {exc}", file=sys.stderr)
            return 1
    public_key = None
    if args.oauth_public_key:
        try:
            with open(args.oauth_public_key, encoding="utf-8") as handle:
                public_key = handle.read()
        except OSError as exc:
            print(f"error: cannot read --oauth-public-key: {exc}", file=sys.stderr)
            return 1
    try:
        collector = Collector(
            host=args.host,
            port=args.port,
            db=None if args.ephemeral else args.db,
            write_keys=args.write_keys,
            auth=Auth(oauth_public_key=public_key, oauth_token_lifetime_s=args.oauth_token_lifetime),
            faults=Faults(
                fail_status=args.fail_status,
                fail_count=args.fail_count,
                fail_rate=args.fail_rate,
                retry_after=_retry_after_value(args.retry_after),
                seed=args.seed,
                delay_s=args.delay,
                delay_count=args.delay_count,
                reset_count=args.reset_count,
            ),
            # A long-running server must not keep every body in memory.
            limits=CollectorLimits(keep_requests=1000),
            log=None if args.quiet else log,
            annotators=annotators,
        )
        collector.start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(
                f"error: cannot start the collector: port {args.port} on {args.host} is already in use "
                "(another `segment-lite serve`?); choose another with --port, or --port 0 for a free one",
                file=sys.stderr,
            )
        else:
            print(f"error: cannot start the collector on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    except (ValueError, sqlite3.Error) as exc:
        print(f"error: cannot start the collector: {exc}", file=sys.stderr)
        return 1

    stop = threading.Event()
    previous: Optional[Any] = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        print(f"segment-lite collector listening on {collector.url}", flush=True)
        print(f"  debugger page: {collector.url}/", flush=True)
        where = "a temporary database (deleted on exit)" if args.ephemeral else args.db
        print(f"  storing events in {where}", flush=True)
        if args.write_keys:
            print(f"  accepting {len(args.write_keys)} configured write key(s)", flush=True)
        if public_key is not None:
            print(f"  OAuth mode: tokens at {collector.url}/token, required as Bearer", flush=True)
        if args.plan:
            print(f"  checking events against the tracking plan {args.plan}", flush=True)
        print("  press Ctrl-C to stop", flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        collector.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print("collector stopped", file=sys.stderr, flush=True)
    return 0


# -- events and tail --------------------------------------------------------------


def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        default=DEFAULT_DB,
        metavar="PATH",
        help=f"SQLite file written by serve (default: {DEFAULT_DB})",
    )
    p.add_argument(
        "--type",
        choices=MESSAGE_TYPES,
        metavar="TYPE",
        help="only this type: identify, track, page, screen, group or alias (default: all)",
    )
    p.add_argument(
        "--user-id", metavar="ID", help="only events whose userId or anonymousId is ID (default: all)"
    )
    p.add_argument("--event", metavar="NAME", help="only track events named NAME (default: all)")
    p.add_argument(
        "--json",
        action="store_true",
        help="print each full message as one JSON line (default: a table)",
    )


def _add_events(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "events",
        help="list stored events, newest first",
        description="List events stored by `segment-lite serve`, newest first.",
    )
    _add_filters(p)
    p.add_argument("--limit", type=int, default=20, metavar="N", help="show at most N events (default: 20)")
    p.add_argument(
        "--violations",
        action="store_true",
        help="only events with tracking-plan violations (recorded by `serve --plan`) (default: all)",
    )
    p.set_defaults(handler=_reading_db(_events))


def _add_tail(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "tail",
        help="follow events as they are stored",
        description="Show the last events, then print new ones as `segment-lite serve` stores them.",
    )
    _add_filters(p)
    p.add_argument(
        "-n", "--lines", type=int, default=10, metavar="N", help="first show the last N events (default: 10)"
    )
    p.add_argument(
        "--interval", type=float, default=0.5, metavar="SECONDS", help="poll interval (default: 0.5)"
    )
    p.add_argument(
        "--max-events",
        type=int,
        default=None,
        metavar="N",
        help="exit after printing N events (default: no limit)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="exit after SECONDS (default: follow until Ctrl-C)",
    )
    p.set_defaults(handler=_reading_db(_tail))


def _print_events(events: list[StoredEvent], as_json: bool, out: TextIO) -> None:
    for e in events:
        if as_json:
            line = json.dumps(replace_non_finite(e.message), ensure_ascii=False, sort_keys=True)
            out.write(printable_json(line) + "\n")
        else:
            out.write(format_row(e) + "\n")
    out.flush()


def _open_store(path: str) -> EventStore:
    from segment_lite.collector.store import EventStore

    return EventStore(path)


def _reading_db(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn a database that cannot be read into a one-line error and exit status 1."""

    def run(args: argparse.Namespace) -> int:
        import sqlite3

        try:
            return handler(args)
        except sqlite3.Error as exc:
            print(f"error: cannot read {args.db}: {exc}", file=sys.stderr)
            return 1

    run.__doc__ = handler.__doc__
    return run


def _events(args: argparse.Namespace) -> int:
    if not os.path.exists(args.db):
        print(
            f"error: no database at {args.db} (run `segment-lite serve --db {args.db}` first)",
            file=sys.stderr,
        )
        return 1
    store = _open_store(args.db)
    try:
        filters = {"type": args.type, "user_id": args.user_id, "event": args.event}
        if args.violations:  # recorded inside the message, so filtered here rather than in SQL
            violating = [e for e in store.query(limit=None, newest_first=True, **filters) if e.violations]
            events, total = violating[: max(0, args.limit)], len(violating)
        else:
            events = store.query(limit=max(0, args.limit), newest_first=True, **filters)
            total = store.count(**filters)
        stored = store.count()
    finally:
        store.close()
    out = sys.stdout
    if args.json:
        _print_events(events, True, out)
        return 0
    if not events:
        out.write("no events stored yet\n" if stored == 0 else "no events match\n")
        return 0
    lines = [header()]
    for e in events:
        lines.append(format_row(e))
        lines.extend(format_violations(e))  # none unless `serve --plan` recorded some
    out.write("\n".join(lines) + "\n")
    if total > len(events):
        out.write(f"({len(events)} of {total} shown, newest first; use --limit to see more)\n")
    out.flush()
    return 0


def _tail(args: argparse.Namespace) -> int:
    start = time.monotonic()

    def expired() -> bool:
        return args.timeout is not None and time.monotonic() - start >= args.timeout

    def pause(interval: float) -> None:
        if args.timeout is not None:
            interval = min(interval, max(0.0, args.timeout - (time.monotonic() - start)))
        time.sleep(interval)

    out = sys.stdout
    printed = 0
    try:
        if not os.path.exists(args.db):
            print(
                f"waiting for {args.db} to be created by `segment-lite serve` ...",
                file=sys.stderr,
                flush=True,
            )
            while not os.path.exists(args.db):
                if expired():
                    return 0
                pause(args.interval)
        store = _open_store(args.db)
        try:
            filters = {"type": args.type, "user_id": args.user_id, "event": args.event}
            limit = args.max_events
            after = store.last_id()
            history: list[StoredEvent] = []
            if args.lines > 0 and (limit is None or limit > 0):
                count = args.lines if limit is None else min(args.lines, limit)
                history = store.query(before_id=after + 1, limit=count, newest_first=True, **filters)
                history.reverse()
            if not args.json:
                out.write(header() + "\n")
            _print_events(history, args.json, out)
            printed += len(history)
            print(f"following {args.db} (Ctrl-C to stop)", file=sys.stderr, flush=True)
            while (limit is None or printed < limit) and not expired():
                upto = store.last_id()
                if upto > after:
                    # Everything up to ``upto`` is looked at once, matching or not,
                    # so the cursor can move past rows the filters skip.
                    batch = store.query(
                        after_id=after, before_id=upto + 1, limit=None, newest_first=False, **filters
                    )
                    if limit is not None:
                        batch = batch[: limit - printed]
                    _print_events(batch, args.json, out)
                    printed += len(batch)
                    after = upto
                    continue
                pause(args.interval)
        finally:
            store.close()
    except KeyboardInterrupt:
        print("", file=sys.stderr)
    except BrokenPipeError:
        pass
    return 0


# -- demo -------------------------------------------------------------------------


def _run_demo(args: argparse.Namespace) -> int:
    from segment_lite.collector.demo import run

    try:
        return int(run(db=args.db))
    except FrameworkNotInstalledError as exc:  # h11, the collector extra
        print(f"error: {exc}", file=sys.stderr)
        return 1
