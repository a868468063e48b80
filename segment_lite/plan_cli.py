"""The ``segment-lite plan`` commands: check, infer, lint and codegen.

It sits outside the plan package: it reads the collector's store, and the collector uses the plan package.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable

__all__ = ["register"]

DEFAULT_DB = "events.db"

EPILOG = """\
exit status: 0 fine, 1 problems found (violations, unplanned events, lint findings,
a stale generated module), 2 unusable plan, database or options.
See docs/tracking-plans.md.
"""


def register(subparsers: Any) -> None:
    """Add ``plan`` and its subcommands to the ``segment-lite`` argument parser."""
    plan = subparsers.add_parser(
        "plan",
        help="check events against a tracking plan; infer, lint and generate code from plans",
        description="Work with tracking plans (Segment's Public API JSON or the YAML/JSON authoring form).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = plan.add_subparsers(dest="plan_command", metavar="COMMAND")
    plan.set_defaults(handler=lambda args: _usage(plan))

    check = commands.add_parser(
        "check",
        help="validate the events a collector stored; exit 1 if any violates",
        description="Validate every event stored by `segment-lite serve` against the plan.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("plan", metavar="PLAN", help="the plan file (.yaml, .yml or .json)")
    check.add_argument(
        "--db", default=DEFAULT_DB, help=f"SQLite file written by serve (default: {DEFAULT_DB})"
    )
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument(
        "--allow-unplanned", action="store_true", help="do not fail on track events the plan does not list"
    )
    _add_ref_base(check)
    check.set_defaults(handler=_guarded(_check))

    infer = commands.add_parser(
        "infer",
        help="write a plan that accepts the events a collector stored",
        description=(
            "Infer a plan from stored events: property types, required = present in every event, "
            "enums for small sets of string values, date-time and email formats."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    infer.add_argument(
        "--db", default=DEFAULT_DB, help=f"SQLite file written by serve (default: {DEFAULT_DB})"
    )
    infer.add_argument(
        "-o", "--output", required=True, metavar="PLAN", help="file to write (.yaml/.yml or .json)"
    )
    infer.add_argument("--name", default=None, help="the plan's name (default: the output file's name)")
    infer.add_argument(
        "--form",
        choices=("authoring", "segment"),
        default="authoring",
        help="authoring form (default) or Segment's Public API shape",
    )
    infer.add_argument(
        "--enum-max-values",
        type=int,
        default=10,
        metavar="N",
        help="string fields with 2 to N distinct values become enums (default: 10; 0 turns enums off)",
    )
    infer.add_argument(
        "--enum-min-samples",
        type=int,
        default=5,
        metavar="N",
        help="only fields seen at least N times become enums (default: 5)",
    )
    infer.set_defaults(handler=_guarded(_infer))

    lint = commands.add_parser(
        "lint",
        help="check the plan's naming conventions; exit 1 on findings",
        description=(
            "Check event names (Object Action, Title Case), property-name case and the Spec's semantic "
            "events. Options come from --config (YAML or JSON), then from the flags."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    lint.add_argument("plan", metavar="PLAN", help="the plan file")
    lint.add_argument(
        "--config", metavar="FILE", help="lint options (keys as the flags, e.g. event_case: title)"
    )
    lint.add_argument("--event-case", choices=("title", "sentence", "snake", "camel", "pascal", "any"))
    lint.add_argument("--event-form", choices=("object_action", "any"))
    lint.add_argument("--property-case", choices=("consistent", "snake", "camel", "pascal", "any"))
    lint.add_argument("--trait-case", choices=("consistent", "snake", "camel", "pascal", "any"))
    lint.add_argument(
        "--no-semantic-events", action="store_true", help="do not compare with the Spec's semantic events"
    )
    lint.add_argument(
        "--disable", action="append", default=[], metavar="CHECK", help="skip a check (repeatable)"
    )
    lint.add_argument("--json", action="store_true", help="print findings as JSON")
    _add_ref_base(lint)
    lint.set_defaults(handler=_guarded(_lint))

    codegen = commands.add_parser(
        "codegen",
        help="write a typed Python module with one function per event",
        description="Generate a typed module from the plan. The output is deterministic.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    codegen.add_argument("plan", metavar="PLAN", help="the plan file")
    codegen.add_argument("-o", "--output", required=True, metavar="MODULE", help="the .py file to write")
    codegen.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if MODULE differs from what the plan generates (for CI)",
    )
    _add_ref_base(codegen)
    codegen.set_defaults(handler=_guarded(_codegen))


def _add_ref_base(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ref-base",
        action="append",
        default=[],
        metavar="URL",
        help="an address prefix a remote $ref may point to, fetched once at load (repeatable; default: none)",
    )


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn an unusable plan, database or missing extra into a one-line error and exit status 2."""

    def run(args: argparse.Namespace) -> int:
        import sqlite3

        try:
            from segment_lite.plan.model import PlanError

            try:
                return handler(args)
            except PlanError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            except sqlite3.Error as exc:
                print(f"error: cannot read {args.db}: {exc}", file=sys.stderr)
                return 2
        except ModuleNotFoundError as exc:
            if exc.name not in ("fastjsonschema", "jsonschema", "yaml"):
                raise
            print(
                f"error: this command needs {exc.name} (the plan extra): pip install 'segment-lite[plan]'",
                file=sys.stderr,
            )
            return 2

    return run


def _emit(text: str) -> None:
    """Print ``text`` (and a newline unless it is empty); a reader that went away (``| head``) is ignored."""
    try:
        if text:
            sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # Point stdout at nothing, so the interpreter's own flush at exit cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _read_messages(db: str) -> list[dict[str, Any]]:
    from segment_lite.collector.store import EventStore
    from segment_lite.plan.model import PlanError

    if not os.path.exists(db):
        raise PlanError(f"no database at {db} (run `segment-lite serve --db {db}` first)")
    store = EventStore(db)
    try:
        return [event.message for event in store.query(limit=None, newest_first=False)]
    finally:
        store.close()


def _check(args: argparse.Namespace) -> int:
    from segment_lite.plan.check import check_messages
    from segment_lite.plan.files import load_plan
    from segment_lite.plan.validate import PlanValidator

    validator = PlanValidator(load_plan(args.plan, ref_bases=args.ref_base))
    report = check_messages(validator, _read_messages(args.db))
    if args.json:
        data = report.to_dict()
        data["passed"] = report.passed(args.allow_unplanned)
        _emit(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        _emit(report.format())
    return 0 if report.passed(args.allow_unplanned) else 1


def _infer(args: argparse.Namespace) -> int:
    from segment_lite.plan.files import write_plan
    from segment_lite.plan.infer import InferOptions, infer_plan
    from segment_lite.plan.model import PlanError

    if args.enum_max_values < 0 or args.enum_min_samples < 0:
        raise PlanError("--enum-max-values and --enum-min-samples must not be negative")
    messages = _read_messages(args.db)
    name = args.name or os.path.splitext(os.path.basename(args.output))[0]
    options = InferOptions(enum_max_values=args.enum_max_values, enum_min_samples=args.enum_min_samples)
    plan = infer_plan(messages, name=name, options=options)
    try:
        write_plan(plan, args.output, form=args.form)
    except OSError as exc:
        raise PlanError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    print(
        f"wrote {args.output}: {len(plan.rules)} rule(s) from {len(messages)} event(s)",
        file=sys.stderr,
    )
    return 0


def _lint(args: argparse.Namespace) -> int:
    from segment_lite.plan.files import load_plan, read_document
    from segment_lite.plan.lint import LintConfig, lint_plan
    from segment_lite.plan.model import PlanError

    plan = load_plan(args.plan, ref_bases=args.ref_base)
    config = LintConfig()
    if args.config:
        data = read_document(args.config)
        if not isinstance(data, dict):
            raise PlanError("lint options must be a mapping", None, args.config)
        config = LintConfig.from_mapping(data, args.config)
    changes: dict[str, Any] = {}
    for name in ("event_case", "event_form", "property_case", "trait_case"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.no_semantic_events:
        changes["semantic_events"] = False
    if args.disable:
        changes["disable"] = (*config.disable, *args.disable)
    config = config.but(**changes)
    findings = lint_plan(plan, config)
    if args.json:
        _emit(json.dumps([finding.to_dict() for finding in findings], indent=2, ensure_ascii=False))
    else:
        _emit("\n".join(str(finding) for finding in findings) if findings else "")
        noun = "finding" if len(findings) == 1 else "findings"
        print(f"{args.plan}: {len(findings)} {noun}", file=sys.stderr)
    return 1 if findings else 0


def _codegen(args: argparse.Namespace) -> int:
    from segment_lite.plan.codegen import generate_module
    from segment_lite.plan.files import load_plan
    from segment_lite.plan.model import PlanError

    plan = load_plan(args.plan, ref_bases=args.ref_base)
    source = generate_module(plan, os.path.basename(args.plan))
    if args.check:
        try:
            with open(args.output, encoding="utf-8") as handle:
                current = handle.read()
        except OSError:
            current = None
        if current != source:
            print(f"{args.output} is not up to date with {args.plan}; run `segment-lite plan codegen`")
            return 1
        print(f"{args.output} is up to date")
        return 0
    try:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(source)
    except OSError as exc:
        raise PlanError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    print(f"wrote {args.output}", file=sys.stderr)
    return 0
