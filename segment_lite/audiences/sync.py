"""Send what changed since the last sync, as one identify per user, through the importer's engine.

A sync computes every user's values, compares them with the state file, and
writes the changes to an outbox (JSON Lines beside the state) and the state's
``pending`` table before sending anything. The outbox is sent with
:func:`segment_lite.importer.run_import` and its checkpoint, so a sync killed
at any point resumes where delivery was confirmed, and what was in flight is
sent again with the same messageIds (deduplicated by Segment and the collector).
"""

from __future__ import annotations

import datetime
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from segment_lite.audiences.compute import AudienceResult, compute, format_time, parse_now
from segment_lite.audiences.definitions import Definitions, load_definitions
from segment_lite.audiences.errors import AudienceSyncError
from segment_lite.audiences.state import PendingChange, SyncState

__all__ = ["Change", "SyncSummary", "default_state_path", "diff", "sync"]

#: Keys of the file_key handed to ``derive_message_id``: ids are unique to this feature and version.
_ID_KEY = "segment-lite-audiences"


def default_state_path(definitions_path: str) -> str:
    """``DEFINITIONS.state.db``: the state sits beside the definitions it belongs to."""
    return f"{definitions_path}.state.db"


@dataclass(frozen=True)
class Change:
    """One user's change: the values sent (``traits``), the previous ones, and audiences entered/exited."""

    user_id: str
    seq: int
    traits: dict[str, Any]
    previous: Optional[dict[str, Any]]
    values: dict[str, Any]
    entered: tuple[str, ...] = ()
    exited: tuple[str, ...] = ()

    def describe(self) -> str:
        """``user-1  re_engagement: false -> true, sessions_90d: 3 -> 4`` (for ``--dry-run``)."""
        old = self.previous or {}
        parts = []
        for key, value in self.traits.items():
            before = json.dumps(old[key]) if key in old else "(new)"
            parts.append(f"{key}: {before} -> {json.dumps(value)}")
        return f"{self.user_id}  " + ", ".join(parts)


@dataclass
class SyncSummary:
    """What a sync did. ``status`` is ``completed`` or the importer's status of an unfinished delivery."""

    status: str = "completed"
    users: int = 0
    changed: int = 0
    identifies: int = 0
    tracks: int = 0
    entered: dict[str, int] = field(default_factory=dict)
    exited: dict[str, int] = field(default_factory=dict)
    resumed: int = 0
    refused: int = 0
    dry_run: bool = False
    compute_s: float = 0.0
    elapsed_s: float = 0.0
    events_used: int = 0
    state: Optional[str] = None
    error: Optional[str] = None
    changes: list[Change] = field(default_factory=list, repr=False)
    delivery: Any = field(default=None, repr=False)  # the ImportSummary of the send, when there was one

    @property
    def exit_code(self) -> int:
        """0 when completed; otherwise the importer's exit status (4: delivery failed, resume later)."""
        if self.status == "completed":
            return 0
        from segment_lite.importer import EXIT_CODES

        return EXIT_CODES.get(self.status, 1)

    def as_dict(self) -> dict[str, Any]:
        """The counts as a JSON-ready dict."""
        return {
            "status": self.status,
            "users": self.users,
            "changed": self.changed,
            "identifies": self.identifies,
            "tracks": self.tracks,
            "entered": self.entered,
            "exited": self.exited,
            "resumed": self.resumed,
            "refused": self.refused,
            "dry_run": self.dry_run,
            "compute_s": round(self.compute_s, 3),
            "elapsed_s": round(self.elapsed_s, 3),
            "events_used": self.events_used,
            "state": self.state,
            "error": self.error,
        }

    def format(self) -> str:
        """A short human-readable report."""
        title = (
            "dry run: nothing was sent"
            if self.dry_run
            else ("sync complete" if self.status == "completed" else f"sync stopped ({self.status})")
        )
        lines = [f"segment-lite audiences: {title}"]
        if self.error:
            lines.append(f"  error:          {self.error}")
        if self.resumed:
            lines.append(f"  resumed:        {self.resumed:,} change(s) of an unfinished sync")
        lines.append(f"  users:          {self.users:,} (from {self.events_used:,} events)")
        lines.append(f"  changed:        {self.changed:,}")
        lines.append(f"  identify calls: {self.identifies:,}")
        if self.tracks:
            lines.append(f"  track calls:    {self.tracks:,} (audience entered/exited)")
        for key in sorted(set(self.entered) | set(self.exited)):
            lines.append(f"  {key}: +{self.entered.get(key, 0):,} / -{self.exited.get(key, 0):,}")
        if self.refused:
            lines.append(
                f"  refused:        {self.refused:,} (not recorded as sent, so computed again next time;"
                f" see {self.state}.rejects.jsonl)"
            )
        lines.append(f"  elapsed:        {self.elapsed_s:.2f} s (compute {self.compute_s:.2f} s)")
        if self.state:
            lines.append(f"  state:          {self.state}")
        return "\n".join(lines)


def diff(result: AudienceResult, sent: dict[str, tuple[int, dict[str, Any]]]) -> list[Change]:
    """The changes from ``sent`` (userId -> (seq, values)) to ``result``, in userId order.

    A user never sent gets every value that is not None; a known user gets the
    keys whose value changed (None: the trait is gone, sent as null). Users no
    longer in the events are left as they are.
    """
    audiences = result.definitions.audiences
    changes = []
    for user_id in sorted(result.users):
        values = result.synced_values(user_id)
        before = sent.get(user_id)
        if before is None:
            seq, old = 0, None
            traits = {k: v for k, v in values.items() if v is not None}
        else:
            seq, old = before
            traits = {k: values.get(k) for k in sorted(set(values) | set(old)) if values.get(k) != old.get(k)}
            if not traits:
                continue
        if not traits:
            continue
        was = old or {}
        entered = tuple(a.key for a in audiences if values.get(a.key) is True and was.get(a.key) is not True)
        exited = tuple(a.key for a in audiences if was.get(a.key) is True and values.get(a.key) is not True)
        changes.append(Change(user_id, seq + 1, traits, old, values, entered, exited))
    return changes


def _messages(
    changes: Sequence[Change], definitions: Definitions, now: datetime.datetime
) -> tuple[list[dict[str, Any]], list[PendingChange]]:
    from segment_lite.importer import derive_message_id

    file_key = f"{_ID_KEY}\0{definitions.version}"
    timestamp = format_time(now)
    by_key = {a.key: a for a in definitions.audiences}
    messages: list[dict[str, Any]] = []
    pending: list[PendingChange] = []
    for change in changes:
        content = json.dumps([change.user_id, change.traits], sort_keys=True, separators=(",", ":")).encode()
        # the user's send count is part of the id: re-entering an audience later is a new message
        message_id = derive_message_id(file_key, change.seq, content)
        messages.append(
            {
                "type": "identify",
                "userId": change.user_id,
                "traits": change.traits,
                "timestamp": timestamp,
                "messageId": message_id,
            }
        )
        pending.append((change.user_id, change.seq, change.values, message_id))
        for keys, attr in ((change.entered, "entered_event"), (change.exited, "exited_event")):
            for key in keys:
                audience = by_key[key]
                event = getattr(audience, attr)
                if event is None:
                    continue
                marker = json.dumps([change.user_id, attr, key], separators=(",", ":")).encode()
                messages.append(
                    {
                        "type": "track",
                        "userId": change.user_id,
                        "event": event,
                        "properties": {"audience_key": key, "audience_name": audience.name},
                        "timestamp": timestamp,
                        "messageId": derive_message_id(file_key, change.seq, marker),
                    }
                )
    return messages, pending


class _StateLock:
    """An exclusive lock on ``STATE.lock`` for one sync at a time (advisory; where fcntl exists)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fh: Any = None

    def __enter__(self) -> _StateLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock
            return self
        self._fh = open(self.path, "a")  # held until __exit__
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._fh.close()
            self._fh = None
            raise AudienceSyncError(f"another sync is using this state ({self.path} is locked)") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()  # closing releases the lock
            self._fh = None


def _remove(*paths: str) -> None:
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def _write_outbox(path: str, messages: Sequence[dict[str, Any]]) -> None:
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as fh:
        for message in messages:
            fh.write(json.dumps(message, ensure_ascii=False, separators=(",", ":")))
            fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temporary, path)


def _keep_rejects(rejects_path: str, kept_path: str) -> None:
    """Append the outbox's rejects file to ``STATE.rejects.jsonl``, which outlives the outbox."""
    try:
        with open(rejects_path, "rb") as src:
            data = src.read()
    except FileNotFoundError:
        return
    if data:
        with open(kept_path, "ab") as dst:
            dst.write(data)


def _refused_ids(rejects_path: str) -> set[str]:
    """messageIds of the rows the importer rejected (from its rejects file)."""
    refused: set[str] = set()
    try:
        with open(rejects_path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    row = json.loads(line).get("row")
                except (ValueError, AttributeError):
                    continue
                if isinstance(row, dict) and isinstance(row.get("messageId"), str):
                    refused.add(row["messageId"])
    except FileNotFoundError:
        pass
    return refused


def sync(
    definitions: Union[Definitions, str, os.PathLike[str]],
    inputs: Sequence[str],
    *,
    write_key: Optional[str] = None,
    host: Optional[str] = None,
    state: Optional[str] = None,
    now: Union[str, datetime.datetime, None] = None,
    dry_run: bool = False,
    input_format: Optional[str] = None,
    progress: Any = "none",
    chunk_size: Optional[int] = None,
    client_options: Optional[dict[str, Any]] = None,
    threads: Optional[int] = None,
    **send_options: Any,
) -> SyncSummary:
    """Compute traits and audiences and send each changed user one identify call; returns a summary.

    The first sync sends every user's values (audiences as true/false); later
    ones only the keys whose value changed, so a user who leaves an audience
    gets ``false``. Audiences with ``entered_event``/``exited_event`` also get
    a track call. ``state`` (default ``DEFINITIONS.state.db``) keeps what was
    confirmed sent; beside it ``STATE.outbox.jsonl`` and its import checkpoint
    hold a sync under way, which the next call finishes first. ``dry_run``
    computes the changes (``summary.changes``) and sends nothing.
    ``write_key``, ``host`` and other keywords (``region``, ``max_retries``,
    ``gzip``, ...) are :func:`segment_lite.importer.run_import` options.
    Raises :class:`~segment_lite.audiences.DefinitionError` and
    :class:`~segment_lite.audiences.AudienceInputError` for unusable inputs.
    """
    started = time.perf_counter()
    if not isinstance(definitions, Definitions):
        definitions_path = os.fspath(definitions)
        definitions = load_definitions(definitions_path)
        state = state or default_state_path(definitions_path)
    if state is None:
        raise AudienceSyncError("sync needs a state path when definitions are not read from a file")
    moment = parse_now(now)
    outbox = f"{state}.outbox.jsonl"
    checkpoint = f"{outbox}.checkpoint.json"
    rejects = f"{outbox}.rejects.jsonl"
    kept_rejects = f"{state}.rejects.jsonl"
    summary = SyncSummary(dry_run=dry_run, state=state)
    import_options: dict[str, Any] = dict(send_options)
    import_options.update(write_key=write_key, host=host, progress=progress)
    if chunk_size is not None:
        import_options["chunk_size"] = chunk_size
    if client_options is not None:
        import_options["client_options"] = client_options

    def deliver() -> bool:
        """Send the outbox from its checkpoint; True once every message is confirmed."""
        from segment_lite.importer import run_import

        delivery = run_import([outbox], checkpoint=checkpoint, resume=True, rejects=rejects, **import_options)
        summary.delivery = delivery
        if delivery.status != "completed":
            summary.status = delivery.status
            summary.error = delivery.error or f"delivery {delivery.status}; run the sync again to resume"
            return False
        return True

    with _StateLock(f"{state}.lock"), SyncState(state) as db:
        unfinished = db.pending()
        if unfinished and not dry_run:
            if not os.path.exists(outbox):
                db.discard()  # the outbox was removed by hand: compute the changes again
            else:
                if not deliver():
                    summary.resumed = len(unfinished)
                    summary.elapsed_s = time.perf_counter() - started
                    return summary
                summary.refused += len(unfinished) - db.commit(_refused_ids(rejects))
                summary.resumed = len(unfinished)
                _keep_rejects(rejects, kept_rejects)
        if not dry_run:
            _remove(outbox, checkpoint, rejects)  # leftovers of a finished or never-started sync

        result = compute(definitions, inputs, now=moment, input_format=input_format, threads=threads)
        summary.compute_s = result.elapsed_s
        summary.users = len(result.users)
        summary.events_used = result.inputs.used
        changes = diff(result, db.sent())
        messages, pending = _messages(changes, definitions, moment)
        summary.changes = changes
        summary.changed = len(changes)
        summary.identifies = len(changes)
        summary.tracks = len(messages) - len(changes)
        for change in changes:
            for key in change.entered:
                summary.entered[key] = summary.entered.get(key, 0) + 1
            for key in change.exited:
                summary.exited[key] = summary.exited.get(key, 0) + 1
        if dry_run or not messages:
            summary.elapsed_s = time.perf_counter() - started
            return summary
        _write_outbox(outbox, messages)
        db.begin(pending, {"version": definitions.version, "now": format_time(moment)})
        if not deliver():
            summary.elapsed_s = time.perf_counter() - started
            return summary
        summary.refused += len(pending) - db.commit(_refused_ids(rejects))
        _keep_rejects(rejects, kept_rejects)
        _remove(outbox, checkpoint, rejects)
    summary.elapsed_s = time.perf_counter() - started
    return summary
