"""Run an import: files with a checkpoint (``run_import``), or in-memory rows (``import_rows``)."""

from __future__ import annotations

import dataclasses
import os
import stat
import sys
from collections.abc import Iterable, Sequence
from typing import Any, BinaryIO, Optional, Union

from segment_lite.cli_common import NullProgress, Progress, make_progress
from segment_lite.importer.convert import RowConverter
from segment_lite.importer.engine import ImportEngine
from segment_lite.importer.errors import ImportConfigError, ImportDeliveryError
from segment_lite.importer.mapping import FieldMapping
from segment_lite.importer.options import ImportOptions
from segment_lite.importer.sources import CsvSource, RecordSource, open_source
from segment_lite.importer.state import Checkpoint, FileProgress, RejectsWriter
from segment_lite.importer.summary import ImportSummary

__all__ = [
    "checkpoint_path_of",
    "default_checkpoint_path",
    "default_rejects_path",
    "import_rows",
    "run_import",
    "send_records",
    "total_input_bytes",
]

#: Options that concern files, refused by ``import_rows`` and ``send_dataframe`` (rows in memory).
FILE_ONLY_OPTIONS = (
    "format",
    "delimiter",
    "encoding",
    "checkpoint",
    "resume",
    "shard",
    "on_checkpoint",
    "progress",
)


def _shard_suffix(shard: Optional[tuple[int, int]]) -> str:
    return "" if shard is None or shard[1] == 1 else f".shard-{shard[0]}-of-{shard[1]}"


def default_checkpoint_path(first_input: str, shard: Optional[tuple[int, int]] = None) -> Optional[str]:
    """``FILE.checkpoint.json`` (``FILE.shard-i-of-n.checkpoint.json`` for a shard); None for stdin."""
    if first_input == "-":
        return None
    return f"{first_input}{_shard_suffix(shard)}.checkpoint.json"


def default_rejects_path(first_input: str, shard: Optional[tuple[int, int]] = None) -> str:
    """``FILE.rejects.jsonl``; for stdin ``segment-lite-import.rejects.jsonl``."""
    base = "segment-lite-import" if first_input == "-" else first_input
    return f"{base}{_shard_suffix(shard)}.rejects.jsonl"


def _chosen_path(value: Union[str, bool, None], default: Optional[str]) -> Optional[str]:
    """A path option's file: None or True take ``default``, False or "" mean none, text is the path."""
    if value is None or value is True:
        return default
    if value is False or value == "":
        return None
    return str(value)


def checkpoint_path_of(options: ImportOptions, first_input: str) -> Optional[str]:
    """The checkpoint file of an import with ``options`` starting at ``first_input`` (None: none is kept)."""
    return _chosen_path(options.checkpoint, default_checkpoint_path(first_input, options.shard_spec))


def total_input_bytes(paths: Sequence[str]) -> Optional[int]:
    """The summed size of ``paths`` when all are regular files (for progress and ETA), else None."""
    total = 0
    for path in paths:
        if path == "-":
            return None
        try:
            info = os.stat(path)
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        total += info.st_size
    return total


def _load_previous(
    options: ImportOptions,
    checkpoint_path: Optional[str],
    paths: Sequence[str],
    effective_shard: Optional[tuple[int, int]],
) -> Optional[Checkpoint]:
    """The checkpoint to resume from (None to start over); refuses one written for another import."""
    if not options.resume or checkpoint_path is None:
        return None
    try:
        previous = Checkpoint.load(checkpoint_path)
    except ImportConfigError as exc:
        raise ImportConfigError(
            f"{exc}; run without --resume to start over (its first checkpoint then replaces the file)"
        ) from None
    if previous is None:
        return None
    if previous.shard != effective_shard:
        was = "no shard" if previous.shard is None else f"shard {previous.shard[0]}/{previous.shard[1]}"
        raise ImportConfigError(f"checkpoint {checkpoint_path} was written for {was}; pass the same --shard")
    if previous.id_salt != options.id_salt:
        raise ImportConfigError(f"checkpoint {checkpoint_path} was written with a different --id-salt")
    if len(previous.files) > len(paths):
        raise ImportConfigError(
            f"checkpoint {checkpoint_path} covers {len(previous.files)} inputs; {len(paths)} given"
        )
    return previous


def run_import(
    paths: Sequence[str],
    options: Optional[ImportOptions] = None,
    *,
    stdin: Optional[BinaryIO] = None,
    **overrides: Any,
) -> ImportSummary:
    """Import historical events from files into Segment; returns an :class:`ImportSummary`.

    Options come as an :class:`ImportOptions`, as keyword arguments named like
    its fields (the command's options: ``write_key=``, ``max_errors=``,
    ``progress="plain"``, ...), or both (keywords win).

    ``paths`` are JSON Lines or CSV files (gzip detected by content; ``-`` is
    ``stdin``, by default ``sys.stdin``). Each row becomes one message sent with
    its original timestamp; rows without a messageId get one derived from the
    file's content key and the line (see :func:`derive_message_id`), so
    re-running an import is deduplicated by Segment.

    Progress is confirmed chunk by chunk (``chunk_size`` rows): once every
    message of a chunk is delivered or definitively rejected, ``checkpoint``
    (default ``FILE.checkpoint.json``; ``False`` for none) is rewritten
    atomically. ``resume=True`` skips the rows it covers. Rows that cannot be
    sent, and messages the server rejects, go to ``rejects`` (default
    ``FILE.rejects.jsonl``; ``False`` to only count them) and the import goes
    on, until more than ``max_errors`` were rejected.

    ``shard=(i, n)`` (or ``"i/n"``) imports only the rows on lines ``L`` with
    ``(L - 1) % n == i - 1``. ``dry_run=True`` validates every row with the
    client's real validation and sends nothing.

    The run ends with ``status`` ``completed``, ``max_errors``,
    ``delivery_failed`` (retries exhausted or the write key refused: resume
    later) or ``interrupted`` (KeyboardInterrupt: what was in flight is
    flushed for up to ``interrupt_timeout`` seconds and the checkpoint written).
    Raises ``ImportConfigError`` for unusable options or inputs, ``TypeError``
    for an unknown option name.
    """
    opts = ImportOptions.build(options, overrides, "run_import")
    opts.refuse(("id_columns",), "run_import", "rows of a file get ids from the file and their line")
    paths = list(paths)
    if not paths:
        raise ImportConfigError("no input files")
    if paths.count("-") > 1:
        raise ImportConfigError("stdin (-) can be read only once")
    for path in paths:
        if path != "-" and not os.path.exists(path):
            raise ImportConfigError(f"{path}: no such file")
    shard = opts.shard_spec
    row_options = opts.row_options()
    converter = RowConverter(row_options)

    checkpoint_path = checkpoint_path_of(opts, paths[0])
    if opts.resume and checkpoint_path is None:
        raise ImportConfigError(
            "--resume needs a checkpoint: pass --checkpoint PATH (reading stdin has no default)"
        )
    rejects_path = _chosen_path(opts.rejects, default_rejects_path(paths[0], shard))
    effective_shard = shard if shard is not None and shard[1] > 1 else None
    previous = _load_previous(opts, checkpoint_path, paths, effective_shard)

    total_bytes = total_input_bytes(paths)
    progress: Progress
    if isinstance(opts.progress, str):
        progress = make_progress(opts.progress, sys.stderr, opts.progress_interval, total_bytes)
    else:
        progress = opts.progress
    keep_bytes: Optional[int] = None
    rejects_abspath = None if rejects_path is None else os.path.abspath(rejects_path)
    if previous is not None and rejects_abspath is not None and previous.rejects == rejects_abspath:
        keep_bytes = previous.rejects_bytes  # what follows belongs to rows this run reads again
    rejects_writer = RejectsWriter(rejects_path, append=previous is not None, keep_bytes=keep_bytes)
    files = [FileProgress(p if p == "-" else os.path.abspath(p), "", 0, False) for p in paths]
    if previous is not None:
        for entry, done in zip(files, previous.files):
            entry.key, entry.lines_done, entry.complete = done.key, done.lines_done, done.complete
            entry.read_sha256 = done.read_sha256

    def on_settled(chunks: list[tuple[int, int, bool, Optional[str]]]) -> None:
        for index, line, complete, digest in chunks:
            current = files[index]
            if line > current.lines_done or (line == current.lines_done and digest is not None):
                current.lines_done, current.read_sha256 = line, digest
            current.complete = current.complete or complete
        if checkpoint_path is None or opts.dry_run:
            return
        checkpoint = Checkpoint(
            checkpoint_path,
            files,
            effective_shard,
            opts.id_salt,
            {
                "rows_read": engine.rows_read,
                "sent": engine.sent,
                "rejected": engine.rejected,
                "rejected_by_server": engine.rejected_by_server,
            },
            rejects=rejects_abspath,
            rejects_bytes=rejects_writer.size,
        )
        checkpoint.save()
        if opts.on_checkpoint is not None:
            opts.on_checkpoint(checkpoint)

    engine = ImportEngine(
        opts,
        converter,
        rejects_writer,
        progress=progress,
        total_bytes=total_bytes,
        on_settled=on_settled,
    )

    def read_inputs() -> None:
        for index, path in enumerate(paths):
            source = open_source(
                path, opts.format, delimiter=opts.delimiter, encoding=opts.encoding, stdin=stdin
            )
            try:
                entry = files[index]
                if entry.key and entry.key != source.key:
                    raise ImportConfigError(
                        f"{source.path} is not the input the checkpoint recorded as input {index + 1}"
                        " (its content differs); run without --resume to start over"
                    )
                entry.key = source.key
                skip = entry.lines_done  # lines appended since are imported
                own: Optional[RowConverter] = None
                if isinstance(source, CsvSource) and row_options.mapping is None:
                    own = RowConverter(
                        dataclasses.replace(row_options, mapping=FieldMapping.identity(source.header))
                    )
                engine.run_source(index, source, skip, own, entry.read_sha256)
            finally:
                source.close()

    status = engine.run(read_inputs, interruptible=True)
    summary = engine.summary([f.path for f in files], status)
    summary.checkpoint = None if opts.dry_run else checkpoint_path
    summary.fail_on_rejects = opts.fail_on_rejects
    return summary


def import_rows(
    rows: Iterable[Any],
    options: Optional[ImportOptions] = None,
    *,
    source_key: Optional[str] = None,
    start: int = 0,
    raise_on_failure: bool = True,
    **overrides: Any,
) -> ImportSummary:
    """Send in-memory rows (dicts, or pyspark ``Row`` objects) with one client, flushing at the end.

    Takes the row and sending options of :func:`run_import` (an
    :class:`ImportOptions` and/or keywords); those about files (``format``,
    ``checkpoint``, ``resume``, ``shard``, ...) do not apply and are refused.
    Each row is a Spec message, or a flat record with ``mapping``. Rows with a
    messageId keep it. Without ``source_key`` (the default), the others get one
    derived from their content alone (:func:`~segment_lite.importer.ids.derive_row_id`,
    of the ``id_columns`` when given): a re-run, a retried task, or the same
    row in another partition sends the same id, and Segment deduplicates it;
    two identical rows are one event. With ``source_key``, a row's id is
    ``derive_message_id(source_key, start + position, row JSON)`` instead.
    No checkpoint is kept: a failed run is simply run again.

    Rejected rows are counted and, when ``rejects`` names a file, appended to
    it. With ``raise_on_failure`` a delivery failure raises
    ``ImportDeliveryError`` (so Spark retries the task).
    """
    opts = ImportOptions.build(options, overrides, "import_rows")
    source = RecordSource(rows, source_key, start, id_columns=opts.id_columns)
    return send_records(source, opts, raise_on_failure=raise_on_failure)


def send_records(
    source: RecordSource, options: ImportOptions, *, raise_on_failure: bool = True
) -> ImportSummary:
    """Send the rows of ``source`` with one client made from ``options``, flushing at the end.

    The engine of :func:`import_rows` and of each Spark partition; see there.
    """
    opts = options
    opts.refuse(FILE_ONLY_OPTIONS, "import_rows", "they concern files; rows in memory are sent in one go")
    if opts.rejects is True:
        raise ImportConfigError("import_rows: rejects must be a file path (or None/False to only count)")
    rejects_writer = RejectsWriter(opts.rejects or None, append=True)
    engine = ImportEngine(opts, RowConverter(opts.row_options()), rejects_writer, progress=NullProgress())
    status = engine.run(lambda: engine.run_source(0, source))
    summary = engine.summary([source.path] if source.path else [], status)
    summary.fail_on_rejects = opts.fail_on_rejects
    if raise_on_failure and status == "delivery_failed":
        name = source.path or "rows"
        raise ImportDeliveryError(f"{name}: {summary.error} ({summary.undelivered} message(s) undelivered)")
    return summary
