"""The options of an import, in one place: the command line, ``run_import`` and ``import_rows`` share them."""

from __future__ import annotations

import dataclasses
import datetime
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from segment_lite.cli_common import PROGRESS_MODES, Progress
from segment_lite.importer.constants import DEFAULT_CHUNK_SIZE
from segment_lite.importer.convert import RowOptions
from segment_lite.importer.errors import ImportConfigError
from segment_lite.importer.mapping import FieldMapping
from segment_lite.importer.state import Checkpoint

__all__ = ["ImportOptions", "MappingSpec", "parse_shard"]

#: A column mapping as ``FieldMapping``, a dict ``{target: column}``, or ``"target=column,..."`` text.
MappingSpec = Union[FieldMapping, Mapping[str, Any], str, Sequence[str], None]


def parse_shard(text: Union[str, tuple[int, int], None]) -> Optional[tuple[int, int]]:
    """``"2/4"`` -> ``(2, 4)``: shard 2 of 4 (1-based). Raises ``ImportConfigError``."""
    if text is None:
        return None
    if isinstance(text, tuple):
        index, total = text
    else:
        left, sep, right = str(text).partition("/")
        try:
            index, total = int(left), int(right)
        except ValueError:
            raise ImportConfigError(f"--shard must look like i/n (e.g. 1/4), got {text!r}") from None
        if not sep:
            raise ImportConfigError(f"--shard must look like i/n (e.g. 1/4), got {text!r}")
    if total < 1 or not 1 <= index <= total:
        raise ImportConfigError(
            f"--shard i/n needs 1 <= i <= n (shards are numbered from 1), got {index}/{total}"
        )
    return index, total


@dataclass(frozen=True)
class ImportOptions:
    """Every option of an import. Each command-line option has a field of the same name
    (``--max-errors`` is ``max_errors``), except ``--map``/``--map-file`` (``mapping``),
    ``--set`` (``constants``), ``--no-checkpoint`` (``checkpoint=False``),
    ``--no-rejects`` (``rejects=False``) and ``--json`` (the caller prints the summary).

    Destination:
        write_key: the source's write key (not needed for a dry run).
        host, region: where to send (``host`` for a local collector or a proxy).
        integrations: merged into every message's ``integrations`` (these win).

    Reading rows:
        format: ``jsonl`` or ``csv`` (default: by file name; stdin is JSON Lines).
        type: the message type of rows that do not name one.
        mapping: how columns fill message fields (see :class:`FieldMapping`);
            None reads each row as a Spec message.
        constants: fields set on every message (``{"event": "Signed Up"}``).
        from_archive: rows are Segment archive events: drop ``sentAt``,
            ``messageId`` and ``projectId``.
        delimiter, encoding: CSV only.

    Timestamps:
        allow_now: send rows without a timestamp with the import time (default: reject them).
        timezone: zone of timestamps without an offset (an IANA name or a tzinfo; default UTC).

    Progress, resume and errors:
        checkpoint: the checkpoint path; None for ``FILE.checkpoint.json``, False for none.
        resume: skip the rows the checkpoint confirms.
        rejects: the rejects file; None for ``FILE.rejects.jsonl``, False to only count.
        dry_run: validate every row, send nothing.
        max_errors: stop once more than this many rows were rejected (None: never).
        fail_on_rejects: a completed import that rejected any row ends with exit
            status 5 instead of 0 (``ImportSummary.exit_code``).
        shard: ``"i/n"`` or ``(i, n)``: only the rows on lines i, i+n, i+2n, ...
        id_salt: mixed into derived messageIds (a new salt re-sends rows as new events).
        id_columns: in-memory rows only (``import_rows``, Spark): derive messageIds
            from these columns instead of the whole row.
        chunk_size: rows per confirmed chunk (the checkpoint advances by chunks).
        on_checkpoint: called with each :class:`Checkpoint` just written
            (monitoring, copying it elsewhere; tests use it to stop at a known point).

    Sending:
        gzip: compress request bodies.
        threads: sender threads.
        max_retries: retries per batch (default: the client's, 10).
        client_options: more ``segment_lite.Client`` arguments, over ``CLIENT_DEFAULTS``.
        interrupt_timeout: seconds to deliver what was read after Ctrl-C or a stop.

    Output:
        progress: ``"auto"``, ``"bar"``, ``"plain"``, ``"none"``, or a
            :class:`~segment_lite.cli_common.Progress` object.
        progress_interval: seconds between plain progress lines.
    """

    # destination
    write_key: Optional[str] = field(default=None, repr=False)
    host: Optional[str] = None
    region: Optional[str] = None
    integrations: Optional[dict[str, Any]] = None
    # reading rows
    format: Optional[str] = None
    type: Optional[str] = None
    mapping: MappingSpec = None
    constants: Optional[Mapping[str, Any]] = None
    from_archive: bool = False
    delimiter: Optional[str] = None
    encoding: str = "utf-8"
    # timestamps
    allow_now: bool = False
    timezone: Union[str, datetime.tzinfo, None] = None
    # progress, resume and errors
    checkpoint: Union[str, bool, None] = None
    resume: bool = False
    rejects: Union[str, bool, None] = None
    dry_run: bool = False
    max_errors: Optional[int] = None
    fail_on_rejects: bool = False
    shard: Union[str, tuple[int, int], None] = None
    id_salt: str = ""
    id_columns: Optional[tuple[str, ...]] = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    on_checkpoint: Optional[Callable[[Checkpoint], None]] = None
    # sending
    gzip: bool = False
    threads: int = 1
    max_retries: Optional[int] = None
    client_options: Optional[Mapping[str, Any]] = None
    interrupt_timeout: float = 30.0
    # output
    progress: Union[str, Progress] = "none"
    progress_interval: float = 10.0

    def __post_init__(self) -> None:
        if self.max_errors is not None and self.max_errors < 0:
            raise ImportConfigError("--max-errors must be 0 or more")
        if self.chunk_size < 1:
            raise ImportConfigError(f"--chunk-size must be at least 1, got {self.chunk_size}")
        if self.threads < 1:
            raise ImportConfigError(f"--threads must be at least 1, got {self.threads}")
        if isinstance(self.progress, str) and self.progress not in PROGRESS_MODES:
            raise ImportConfigError(
                f"progress must be one of {', '.join(PROGRESS_MODES)} or a Progress, got {self.progress!r}"
            )
        if self.progress_interval < 0:
            raise ImportConfigError(f"--progress-interval must be 0 or more, got {self.progress_interval}")
        parse_shard(self.shard)
        if self.id_columns is not None:
            if isinstance(self.id_columns, str) or not all(isinstance(c, str) for c in self.id_columns):
                raise ImportConfigError(f"id_columns must be a list of column names, got {self.id_columns!r}")
            object.__setattr__(self, "id_columns", tuple(self.id_columns))  # frozen: normalise once

    @classmethod
    def build(cls, base: Optional[ImportOptions], overrides: Mapping[str, Any], caller: str) -> ImportOptions:
        """``base`` (or the defaults) with ``overrides`` applied; an unknown name raises ``TypeError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        for name in overrides:
            if name not in names:
                close = difflib.get_close_matches(name, sorted(names), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise TypeError(f"{caller}() got an unknown option {name!r}{hint}")
        if base is None:
            return cls(**overrides)
        return dataclasses.replace(base, **overrides) if overrides else base

    def refuse(self, names: Sequence[str], caller: str, reason: str) -> None:
        """Raise ``ImportConfigError`` if any option in ``names`` differs from its default."""
        defaults = ImportOptions()
        changed = [name for name in names if getattr(self, name) != getattr(defaults, name)]
        if changed:
            raise ImportConfigError(f"{caller}: {', '.join(changed)} do(es) not apply: {reason}")

    @property
    def shard_spec(self) -> Optional[tuple[int, int]]:
        """``shard`` as ``(i, n)``, or None."""
        return parse_shard(self.shard)

    def field_mapping(self) -> Optional[FieldMapping]:
        """``mapping`` and ``constants`` as one :class:`FieldMapping` (None: rows are Spec messages)."""
        mapping, constants = self.mapping, self.constants
        if isinstance(mapping, FieldMapping):
            if constants:
                return FieldMapping(mapping.rules, {**mapping.constants, **constants})
            return mapping
        if mapping is not None or constants:
            return FieldMapping.parse(mapping or {}, constants)
        return None

    def row_options(self) -> RowOptions:
        """How rows become messages (raises ``ImportConfigError`` for a bad type, mapping or zone)."""
        return RowOptions(
            type=self.type,
            mapping=self.field_mapping(),
            from_archive=self.from_archive,
            allow_now=self.allow_now,
            timezone=self.timezone,
            integrations=self.integrations,
            id_salt=self.id_salt,
        )
