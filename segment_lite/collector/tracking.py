"""The Tracking API endpoint: a request through faults, credential check, validation, annotation, storage.

A request goes through these steps, each in one place:

1. the fault plan may reset, fail or delay it (:mod:`segment_lite.collector.faults`);
2. the body is read, gunzipped and parsed (:mod:`segment_lite.collector.processing`);
3. the *credential check* accepts or refuses it (:class:`CredentialCheck`; write keys by default);
4. the messages are validated and enriched (``receivedAt``, ``timestamp`` ...);
5. each *annotator* sees each message and may add to it or refuse the request (:data:`Annotator`);
6. the messages are stored, the request recorded, and the answer returned.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Optional

from segment_lite.collector.faults import FaultPlan
from segment_lite.collector.http_server import INTERNAL_ERROR, LocalNames, Request, Response, log
from segment_lite.collector.processing import (
    Limits,
    RequestError,
    batch_too_large,
    decode_body,
    error_body,
    parse_json,
    prepare_messages,
    write_key_from_auth,
)
from segment_lite.collector.recording import RecordedRequest, RequestLog
from segment_lite.collector.store import EventStore
from segment_lite.collector.text import printable
from segment_lite.limits import MESSAGE_TYPES

__all__ = [
    "REJECTED_BODY_PREFIX_BYTES",
    "TRACKING_PATHS",
    "Annotator",
    "CredentialCheck",
    "Credentials",
    "TrackingEndpoint",
    "WriteKeyCheck",
]

# Paths of the Tracking API, mapped to the kind of body they take.
TRACKING_PATHS = {"/v1/batch": "batch", "/v1/import": "batch"}
TRACKING_PATHS.update({f"/v1/{kind}": kind for kind in MESSAGE_TYPES})

# A refused request keeps only this much of its body in ``Collector.requests``.
REJECTED_BODY_PREFIX_BYTES = 1024

# Deflate grows incompressible data by 5 bytes per 64 KiB block, and gzip adds an
# 18-byte frame, so a gzip body this much over the batch limit cannot inflate to
# within it: it is refused (413) without being held in memory.
_GZIP_OVERHEAD_BYTES = 1024


@dataclass(frozen=True)
class Credentials:
    """What a Tracking API request offers as proof of who sends it.

    ``authorization`` is the ``Authorization`` header as sent (or None);
    ``body_write_key`` the body's ``writeKey`` (None when absent, not a string,
    or the body could not be parsed); ``body_error`` why the body could not be
    read or parsed, if it could not (a check that needs the body raises it).
    """

    authorization: Optional[str]
    body_write_key: Optional[str]
    body_error: Optional[RequestError] = None


CredentialCheck = Callable[[Credentials], None]
"""Accepts a request's :class:`Credentials` by returning; refuses them by raising a 401 ``RequestError``."""

Annotator = Callable[[dict[str, Any], int], dict[str, Any]]
"""Called with each validated, enriched message and its index in the request.

Returns the message to store (the same dict, changed or not, or a new one);
raising :class:`RequestError` refuses the whole request. Annotators run in
order, after validation and before storage.
"""


class WriteKeyCheck:
    """The default credential check: the key is the Basic auth user name, else ``writeKey`` in the body."""

    def __init__(self, keys: frozenset[str]) -> None:
        self.keys = keys

    def __call__(self, credentials: Credentials) -> None:
        header_key = write_key_from_auth(credentials.authorization) or None
        if header_key is not None:
            if header_key not in self.keys:
                raise RequestError(401, "unauthorized", "unknown write key")
            return
        if credentials.body_error is not None:
            raise credentials.body_error
        body_key = credentials.body_write_key
        if not body_key:
            raise RequestError(
                401,
                "unauthorized",
                "missing write key: send it as the Basic auth user name or as writeKey in the body",
            )
        if body_key not in self.keys:
            raise RequestError(401, "unauthorized", "unknown write key")


class TrackingEndpoint:
    """Answers requests to the Tracking API paths and records each one in ``log``.

    ``credential_check`` None accepts any request (then writes from a web page
    on another origin are refused, see :meth:`handle`); ``local`` says which
    ``Origin`` values are this machine's; ``clock`` gives the receive time;
    ``sleep`` serves injected delays (it may return early on stop).
    """

    def __init__(
        self,
        *,
        store: EventStore,
        log: RequestLog,
        faults: FaultPlan,
        limits: Limits,
        credential_check: Optional[CredentialCheck],
        annotators: Sequence[Annotator],
        local: LocalNames,
        clock: Callable[[], datetime],
        sleep: Callable[[float], object],
    ) -> None:
        self._store = store
        self._log = log
        self._faults = faults
        self._limits = limits
        self._credential_check = credential_check
        self._annotators = tuple(annotators)
        self._local = local
        self._clock = clock
        self._sleep = sleep

    def handle(self, request: Request, kind: str) -> Response:
        """Answer one request to a Tracking API path; ``kind`` is ``"batch"`` or a message type.

        Before anything else, writes a browser could send from another site are
        refused: a body that is not ``Content-Type: application/json`` (415),
        and, when no credential check is configured, a foreign ``Origin`` (403).
        """
        record = _record_of(request)
        error: Optional[RequestError] = None
        try:
            body = request.read_body(keep_bytes=self._limits.max_batch_bytes + _GZIP_OVERHEAD_BYTES)
            record.raw_body, record.raw_body_size = body.data, body.size
            if not body.complete:
                error = batch_too_large(body.size, self._limits.max_batch_bytes)
        except RequestError as exc:
            error = exc
        try:
            self._refuse_cross_site(request)
        except RequestError as exc:
            return self._answer(record, exc.status, exc.body())

        fault = self._faults.take()
        record.fault = fault.name()
        payload: Any = None
        if error is None:
            try:
                record.body = decode_body(
                    record.raw_body, request.headers.get("Content-Encoding"), self._limits.max_batch_bytes
                )
                payload = parse_json(record.body)
            except RequestError as exc:
                error = exc

        if fault.reset or self._faults.resets_body(record.body or record.raw_body):
            record.fault = "reset"
            self._log.record(record)
            return Response.reset()

        status = 200
        answer: Any = {"success": True}
        messages: list[dict[str, Any]] = []
        rejected = 0
        if fault.failure is None:
            try:
                self._check_credentials(request, payload, error)
                if error is not None:
                    raise error
                messages = prepare_messages(kind, payload, self._clock(), self._limits)
                messages = self._annotate(messages)
            except RequestError as exc:
                status, answer = exc.status, exc.body()
                if isinstance(payload, dict):
                    batch = payload.get("batch") if kind == "batch" else [payload]
                    rejected = len(batch) if isinstance(batch, list) else 0
            except Exception:  # an annotator's bug, or ours: answer 500, without its text
                log.exception("the collector failed on a request to %s", request.path)
                status, answer = 500, error_body("internal_error", INTERNAL_ERROR)
                messages = []

        if fault.delay_s > 0:
            self._sleep(fault.delay_s)
            if request.client_gone():
                # The client gave up waiting: nothing is stored, as nothing was acknowledged.
                record.status = 499
                self._log.record(record, abandoned=True)
                return Response.hang_up()

        stored = duplicates = 0
        if status == 200 and messages:
            try:
                result = self._store.insert_many(messages)
                stored, duplicates = result.stored, result.duplicates
            except Exception:
                log.exception("the collector could not store %d message(s)", len(messages))
                status, answer = 500, error_body("storage_error", "the messages could not be stored")
                messages = []

        if fault.failure is not None:
            failure = fault.failure
            response = Response(
                failure.status, failure.body, failure.content_type, failure.response_headers()
            )
            record.status, record.response_body = response.status, response.body
            self._log.record(record)
            return response
        return self._answer(
            record,
            status,
            answer,
            received=len(messages) if status == 200 else 0,
            stored=stored,
            duplicates=duplicates,
            rejected=rejected,
        )

    def unroutable(self, request: Request, status: int, code: str, message: str) -> Response:
        """Answer (and record) a request under ``/v1/`` that no endpoint takes."""
        record = _record_of(request)
        try:
            body = request.read_body(keep_bytes=REJECTED_BODY_PREFIX_BYTES)
            record.raw_body, record.raw_body_size = body.data, body.size
        except RequestError:
            pass
        return self._answer(record, status, error_body(code, message))

    def _answer(self, record: RecordedRequest, status: int, answer: Any, **counts: Any) -> Response:
        """Record the request with its answer and return that answer as JSON."""
        if status >= 400:
            # A refused body is kept only as a prefix: enough to see what it was.
            record.raw_body = record.raw_body[:REJECTED_BODY_PREFIX_BYTES]
            if record.body is not None:
                record.body = record.body[:REJECTED_BODY_PREFIX_BYTES]
        response = Response.json(status, answer)
        record.status, record.response_body = status, response.body
        self._log.record(record, **counts)
        return response

    def _refuse_cross_site(self, request: Request) -> None:
        media_type = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            shown = printable(media_type[:60]) if media_type else "missing"
            raise RequestError(
                415,
                "unsupported_media_type",
                f"the Content-Type must be application/json (it was {shown})",
            )
        origin = request.headers.get("Origin")
        if origin is not None and self._credential_check is None and not self._local.allows_origin(origin):
            raise RequestError(
                403,
                "forbidden_origin",
                f"writes from a web page on {printable(origin[:100])} are refused; "
                "configure a write key to accept writes from browsers",
            )

    def _check_credentials(self, request: Request, payload: Any, body_error: Optional[RequestError]) -> None:
        if self._credential_check is None:
            return  # authentication is off: any key, or none, is accepted
        body_key = payload.get("writeKey") if isinstance(payload, dict) else None
        self._credential_check(
            Credentials(
                authorization=request.headers.get("Authorization"),
                body_write_key=body_key if isinstance(body_key, str) else None,
                body_error=body_error,
            )
        )

    def _annotate(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not self._annotators:
            return messages
        out = []
        for index, message in enumerate(messages):
            for annotate in self._annotators:
                message = annotate(message, index)
            out.append(message)
        return out


def _record_of(request: Request) -> RecordedRequest:
    """A record of ``request`` as it arrived, before its body is read or it is answered."""
    return RecordedRequest(
        method=request.method,
        path=request.path,
        headers=request.headers,
        raw_body=b"",
        target=request.target,
        received_at=time.time(),
    )
