"""Every exception segment_lite raises or reports, in one place.

Raised at the call site (programmer errors; nothing was queued):

* ``ValidationError`` -- a required field is missing or has the wrong type. It
  subclasses ``AssertionError`` (what segment-analytics-python raised) and
  ``ValueError``, so existing ``except`` clauses keep working.
* ``MessageTooLargeError`` -- the encoded message is over 32 KB. Also a
  ``RuntimeError``, as in segment-analytics-python.
* ``EncodeError`` -- a value cannot be encoded to JSON; ``path`` names it
  (``properties.cart.owner``). Subclasses ``TypeError``. Also raised for dict keys
  that collide once written (``{1: "a", "1": "b"}``).
* ``NestingTooDeepError`` -- an ``EncodeError``: objects and arrays nest deeper
  than ``limits.MAX_NESTING_DEPTH``; ``path`` and ``limit`` say where and how deep.
* ``PlanViolationError`` -- the message breaks the tracking plan and the client
  was told to raise (``on_violation="raise"``). A ``ValidationError``.

Raised at import time:

* ``FrameworkNotInstalledError`` -- a framework integration module was imported
  without its framework; the message names the extra to install. Subclasses
  ``ImportError``.

Reported through ``on_error(exc, messages)``, delivery failures only (and counted
in ``stats()``):

* ``APIError`` -- the server answered with a status that is not retried; ``host``
  names the server.
* ``RetriesExhaustedError`` -- retryable failures outlasted ``max_retries`` or the
  retry time budget; ``last_error`` names the cause.
* ``ConnectionClosed`` (a ``TransportError``) -- the server closed the
  connection without an answer each time one message was sent, while it answered
  the rest of its batch: that message is dropped as ``rejected``.

Reported through ``on_drop(reason, exc, messages)`` (and counted in ``stats()``),
besides the refusals above, which also raise at the call:

* ``QueueFullError`` -- the queue had no room (count or bytes).
* ``ShutdownError`` -- the message was still undelivered when ``shutdown()``'s
  deadline passed, or was tracked after shutdown.
* ``SpoolWriteError`` -- the disk spool could not store the message (disk full,
  I/O error); it was not accepted.
* ``SpoolCorruptError`` -- a database of the disk spool could not be read back
  (overwritten or corrupted on disk) and was set aside.
* ``FilteredError`` -- a ``before_send`` hook returned ``None`` (a choice, counted
  as ``filtered``; never raised).

Raised by ``Client(spool_dir=...)``:

* ``SpoolError`` -- the spool directory cannot be used (not a directory, no
  permission); also the base of the two spool errors above.

Kept inside the spool (never raised to a caller):

* ``JournalError`` -- a spool journal's header cannot be read (not a journal,
  another version, damaged); the spool counts what it held as ``spool_corrupt``.

Raised by a transport to the sender, which retries or reports it (never to the caller);
``segment_lite.transport`` names them too:

* ``TransportError`` -- the request got no response; its subclasses say why:
  ``ConnectError``, ``TransportTimeout``, ``ConnectionClosed`` (``StaleConnection``),
  ``MalformedResponse``, ``Aborted``.
* ``OAuthError`` -- no OAuth token can be had with this configuration (bad key,
  refused client); reported through ``on_error``.

Raised by the library's other public calls:

* ``TimestampError`` -- a value is not a usable timestamp (also a ``ValueError``).
* ``InvalidStateError`` -- the object cannot do that now: closed, not started, or
  started twice (a ``Collector``, an ``EventStore``, Flask's ``SegmentPageviews``).
  Also a ``RuntimeError``.
* ``PlanError`` -- a tracking plan cannot be used; a ``ValidationError`` naming the
  file, line and path (``segment_lite.plan`` names it too).
* ``RequestError`` -- the local collector refuses a request (status, ``code``,
  ``message``); ``ClientGone`` -- its client left mid-request
  (``segment_lite.collector`` names them too).
* ``RowError``, ``ImportConfigError`` (both also ``ValueError``) and
  ``ImportDeliveryError`` -- a bad input row, an unusable import setup, an import
  whose messages could not be delivered (``segment_lite.importer`` names them too).
* ``DefinitionError`` (also a ``ValueError``, naming the file, line, definition and
  field), ``AudienceInputError`` (also a ``ValueError``) and ``AudienceSyncError`` -- an
  unusable audiences definitions file, an unreadable input, a sync that could not
  deliver every change (``segment_lite.audiences`` names them too).

Configuration mistakes (a bad ``region``, ``on_full``, ``thread``)
raise ``ValidationError`` when the client is made. Every exception the library
raises derives from ``SegmentLiteError``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional


def safe_repr(value: Any, limit: int = 64) -> str:
    """``repr(value)`` for an error's text, cut to ``limit`` characters; never raises.

    Error texts quote objects the caller passed, whose ``__repr__`` may raise:
    the library's error must still be raised (and counted), not that exception.
    """
    try:
        text = repr(value)
    except Exception as exc:
        return f"<{type(value).__name__} whose repr() raised {type(exc).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SegmentLiteError(Exception):
    """Base class of every segment_lite exception."""


class ValidationError(SegmentLiteError, AssertionError, ValueError):
    """A call's arguments do not make a valid Spec message.

    ``path`` is the field at fault as it appears in the message (``event``,
    ``userId``, ``context``).
    """

    def __init__(self, message: str, path: Optional[str] = None) -> None:
        super().__init__(message)
        self.path = path


class MessageTooLargeError(ValidationError, RuntimeError):
    """The encoded message exceeds the per-message limit.

    Also a ``RuntimeError``, what segment-analytics-python raises for it.
    """

    def __init__(self, size_bytes: int, limit_bytes: int, message_type: str) -> None:
        super().__init__(
            f"{message_type} message is {size_bytes} bytes encoded, over the {limit_bytes}-byte limit "
            "(Segment rejects messages over 32 KB); trim properties, traits or context",
        )
        self.size_bytes = size_bytes
        self.limit_bytes = limit_bytes


class PlanViolationError(ValidationError):
    """A message breaks the tracking plan.

    ``violations`` lists every problem found (``segment_lite.plan.Violation``, each
    with its ``path``, ``rule``, ``keyword`` and offending ``value``); ``path`` is
    the first one's.
    """

    def __init__(self, violations: Sequence[Any]) -> None:
        first = violations[0] if violations else None
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        super().__init__(f"tracking plan violation: {first}{more}", getattr(first, "path", None))
        self.violations = list(violations)


class EncodeError(SegmentLiteError, TypeError):
    """A value in the message cannot be encoded to JSON.

    ``path`` names the value, e.g. ``properties.cart.owner`` or ``traits.tags[2]``.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot encode {path}: {reason}")
        self.path = path
        self.reason = reason


class NestingTooDeepError(EncodeError):
    """Objects and arrays in the message nest deeper than the limit (``limits.MAX_NESTING_DEPTH``).

    ``path`` names the first value past it; ``limit`` is the limit. Servers refuse
    (or crash on) deeply nested JSON, so such a message is never sent as it is.
    """

    def __init__(self, path: str, limit: int) -> None:
        super().__init__(path, f"nested deeper than {limit} levels, the limit for a message")
        self.limit = limit


class APIError(SegmentLiteError):
    """The server rejected a batch with a status that is not retried.

    ``status``, ``code`` and ``message`` mirror segment-analytics-python's APIError;
    ``host`` is the server that answered (``host:port``), and the text names it:
    ``[127.0.0.1:8080] unauthorized: unknown write key (401)``.
    """

    def __init__(self, status: int, code: str, message: str, host: Optional[str] = None) -> None:
        super().__init__(f"[{host or 'Segment'}] {code}: {message} ({status})")
        self.status = status
        self.code = code
        self.message = message
        self.host = host


def api_error_fields(body: bytes, fallback: str) -> tuple[str, str]:
    """The ``code`` and ``message`` of a Tracking API error body, the one parser of them.

    The API answers ``{"code": ..., "message": ...}``; a field it leaves out is
    ``"unknown"`` (the code) or ``fallback`` (the message: the body's text, as the
    caller wants it shown).
    """
    code, message = "unknown", fallback
    try:
        payload = json.loads(body)
    except (ValueError, TypeError, RecursionError):  # not JSON (a proxy's HTML page), nested too deep
        return code, message
    if isinstance(payload, dict):
        code = str(payload.get("code", code))
        message = str(payload.get("message", message))
    return code, message


class RetriesExhaustedError(SegmentLiteError):
    """Retryable failures outlasted the retry count or the retry time budget.

    ``last_error`` names the cause of the last failure (``connection refused to
    127.0.0.1:8080``, ``503 ... from api.segment.io``); ``failing_s`` is how long
    the batch had been failing. Like ``APIError`` (and the reference's APIError,
    which code reading ``on_error`` reports expects), it has ``status`` (the last
    HTTP status, or None when the last attempt got no answer), ``code``
    (``"retries_exhausted"``) and ``message`` (the text).
    """

    code = "retries_exhausted"

    def __init__(
        self,
        attempts: int,
        last_error: str,
        failing_s: Optional[float] = None,
        status: Optional[int] = None,
    ) -> None:
        over = f" over {failing_s:.1f}s" if failing_s else ""
        attempts_text = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        message = f"gave up after {attempts_text}{over}; last error: {last_error}"
        super().__init__(message)
        self.attempts = attempts
        self.last_error = last_error
        self.failing_s = failing_s
        self.status = status
        self.message = message


class QueueFullError(SegmentLiteError):
    """The queue had no room for the message (``max_queue_size`` or ``max_queue_bytes``)."""


class ShutdownError(SegmentLiteError):
    """The client was shut down before the message could be delivered."""


class SpoolError(SegmentLiteError):
    """The disk spool cannot be used, or lost a message; the message names the path."""


class SpoolWriteError(SpoolError):
    """The disk spool could not write a message (disk full, I/O error): it was not accepted.

    ``errno`` is the operating system's error number (``errno.ENOSPC`` for a full disk).
    """

    def __init__(self, message: str, errno: Optional[int] = None) -> None:
        super().__init__(message)
        self.errno = errno


class JournalError(SpoolError, ValueError):
    """A spool journal's header cannot be read: not a journal, another version, or damaged."""


class SpoolCorruptError(SpoolError):
    """Messages of the disk spool could not be read back and were set aside.

    ``records`` is how many were lost (an unreadable database, whose count
    cannot be read, is one), ``path`` where they were, ``offset`` where the
    unreadable bytes start (0: the whole file) and ``nbytes`` how many.
    """

    def __init__(self, records: int, path: str, offset: int, nbytes: int) -> None:
        super().__init__(
            f"{records} message(s) lost: {path} could not be read back ({nbytes} bytes from offset "
            f"{offset}; corrupted on disk) and was set aside"
        )
        self.records = records
        self.path = path
        self.offset = offset
        self.nbytes = nbytes


class FilteredError(SegmentLiteError):
    """A ``before_send`` hook returned ``None`` for the message (reported to ``on_drop``, never raised)."""


class FrameworkNotInstalledError(SegmentLiteError, ImportError):
    """A framework integration was imported without its framework installed.

    Raised when ``segment_lite.integrations.django`` (or ``.flask``, ``.celery``) is
    imported and its framework cannot be; the message names the extra that installs it.
    ``framework`` is the framework's name and ``extra`` the segment-lite extra. It
    subclasses ``ImportError``, so ``except ImportError`` around optional imports still works.
    """

    def __init__(self, integration: str, framework: str, extra: str) -> None:
        super().__init__(
            f'{integration} needs {framework}, which is not installed: pip install "segment-lite[{extra}]"',
            name=integration,
        )
        self.integration = integration
        self.framework = framework
        self.extra = extra


def raise_if_framework_missing(exc: ImportError, *, integration: str, framework: str, extra: str) -> None:
    """Raise :class:`FrameworkNotInstalledError` if ``exc`` says the optional package itself is missing.

    ``framework`` is the package's top-level module (``django``, ``prometheus_client``);
    ``exc`` comes from importing it. Any other import failure (a broken install, a missing
    dependency of the package) returns, and the caller re-raises it unchanged.
    """
    missing = (exc.name or "").partition(".")[0]
    if isinstance(exc, ModuleNotFoundError) and missing == framework:
        # One error, not two chained tracebacks; the original stays on __context__.
        display_name = _DISPLAY_NAMES.get(framework, framework)
        raise FrameworkNotInstalledError(integration, display_name, extra) from None


_DISPLAY_NAMES = {
    "django": "Django",
    "flask": "Flask",
    "celery": "Celery",
    "fastapi": "FastAPI",
    "prometheus_client": "prometheus_client",
    "opentelemetry": "opentelemetry-api",
}


class InvalidStateError(SegmentLiteError, RuntimeError):
    """The object cannot do that now: it is closed, not started yet, or already started.

    Also a ``RuntimeError``, what these calls raised before.
    """


# -- Raised by a transport to the sender (never to the caller) -------------------------------------


class TransportError(SegmentLiteError):
    """The request did not get a response; the subclasses say why (``segment_lite.transport`` draws the tree).

    The message names the cause and the server, e.g. ``connection refused to
    127.0.0.1:8080`` or ``TLS error with api.segment.io:443: certificate verify failed``.
    A transport of your own raises this class, or the subclass that fits.
    """


class ConnectError(TransportError):
    """No connection could be made: refused, a name that does not resolve, TLS, a proxy's refusal."""


class TransportTimeout(TransportError):
    """Connecting, or waiting for the answer, took longer than the timeout."""


class ConnectionClosed(TransportError):
    """The server closed or reset the connection without a complete answer.

    Twice in a row for one batch, the sender bisects it to find a message the
    server cannot take.
    """


class StaleConnection(ConnectionClosed):
    """A reused keep-alive connection was closed or reset: usually one the server had closed
    while idle, so the sender tries again at once (once per batch); should the server
    have received the batch after all, it deduplicates the retry by messageId."""


class MalformedResponse(TransportError):
    """The answer is not HTTP/1.x: a bad status line (``HTTP/1.1 2000 OK``), headers or framing."""


class Aborted(TransportError):
    """``Transport.abort()`` cut the request short (a shutdown whose time was up)."""


# -- Timestamps ------------------------------------------------------------------------------------


class TimestampError(SegmentLiteError, ValueError):
    """A value that is not a usable timestamp."""


# -- OAuth -----------------------------------------------------------------------------------------


class OAuthError(SegmentLiteError):
    """A token can never be obtained with this configuration (bad key, refused client).

    ``status``, ``code`` and ``message`` mirror segment-analytics-python's APIError;
    ``status`` is the auth server's answer, or 0 when no request could be made.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"OAuth token request failed: {code}: {message} ({status})")
        self.status = status
        self.code = code
        self.message = message


# -- Tracking plans --------------------------------------------------------------------------------


class PlanError(ValidationError):
    """A tracking plan file or mapping that cannot be used (a ``ValidationError``, so a ``ValueError``).

    ``path`` names the place at fault inside the plan (``events.Order Completed.properties.total``
    or ``rules[3].jsonSchema``); ``source`` is the file it came from, when there is one, and
    ``line`` the line in it (1-based) when it is known.
    """

    def __init__(
        self,
        message: str,
        path: Optional[str] = None,
        source: Optional[str] = None,
        line: Optional[int] = None,
    ) -> None:
        place = source if line is None else f"{source}:{line}" if source else f"line {line}"
        where = ": ".join(part for part in (place, path) if part)
        super().__init__(f"{where}: {message}" if where else message, path)
        self.reason = message
        self.source = source
        self.line = line


# -- The local collector ---------------------------------------------------------------------------


@dataclass
class RequestError(SegmentLiteError):
    """A request the collector refuses: HTTP status, a stable machine code and a readable message.

    ``details`` is merged into the JSON error body (for example ``index`` and ``size``).
    """

    status: int
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def body(self) -> dict[str, Any]:
        """The JSON error body answered to the client."""
        return {"success": False, "code": self.code, "message": self.message, **self.details}


class ClientGone(SegmentLiteError):
    """The client went away while its request was being read."""


# -- The importer ----------------------------------------------------------------------------------


class RowError(SegmentLiteError, ValueError):
    """One input row cannot become a message; ``field`` is the message field at fault, when known.

    The importer writes it to the rejects file and goes on with the next row.
    """

    def __init__(self, reason: str, field: Optional[str] = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


class ImportConfigError(SegmentLiteError, ValueError):
    """The options or the inputs of an import are unusable (unknown column type, bad mapping,
    a checkpoint that belongs to other files, ...). Nothing is sent."""


class ImportDeliveryError(SegmentLiteError):
    """Messages could not be delivered (retries exhausted, write key refused, ...).

    Progress confirmed before the failure is kept in the checkpoint; resume later.
    """


# -- Audiences (segment_lite.audiences names them too) ------------------------------------------


class DefinitionError(SegmentLiteError, ValueError):
    """The definitions file is unusable.

    ``line`` (1-based, when known), ``definition`` (the trait or audience name,
    when known) and ``field`` (the path inside it, e.g. ``where.all[1].value``)
    say where; the message repeats them.
    """

    def __init__(
        self,
        reason: str,
        *,
        line: Optional[int] = None,
        definition: Optional[str] = None,
        field: Optional[str] = None,
        path: Optional[str] = None,
    ) -> None:
        where = []
        if path:
            where.append(f"{path}{f':{line}' if line else ''}")
        elif line:
            where.append(f"line {line}")
        if definition:
            where.append(f"definition {definition!r}")
        if field:
            where.append(f"field {field}")
        super().__init__(f"{', '.join(where)}: {reason}" if where else reason)
        self.reason = reason
        self.line = line
        self.definition = definition
        self.field = field


class AudienceInputError(SegmentLiteError, ValueError):
    """An input (events file, collector store, Parquet file) cannot be read."""


class AudienceSyncError(SegmentLiteError):
    """A sync could not deliver every change; what was confirmed is kept, run again to resume."""
