"""Tracking API semantics: body decoding, limits, validation, timestamps and context merging."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional

from segment_lite.errors import RequestError
from segment_lite.limits import (
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    MAX_MESSAGE_BYTES,
    MAX_NESTING_DEPTH,
    MESSAGE_TYPES,
)
from segment_lite.shape import replace_non_finite
from segment_lite.timestamps import format_utc, parse_api_timestamp

__all__ = [
    "Limits",
    "RequestError",
    "batch_too_large",
    "decode_body",
    "error_body",
    "json_bytes",
    "nesting_error",
    "parse_json",
    "parse_timestamp",
    "prepare_messages",
    "replace_non_finite",
    "write_key_from_auth",
]


@dataclass(frozen=True)
class Limits:
    """Size and count limits, Segment's published values by default."""

    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_batch_bytes: int = MAX_BATCH_BYTES
    max_batch_messages: int = MAX_BATCH_MESSAGES


def error_body(code: str, message: str) -> dict[str, Any]:
    """The JSON error body every endpoint answers: ``success``, a stable ``code`` and a ``message``."""
    return {"success": False, "code": code, "message": message}


# -- decoding -----------------------------------------------------------------

_GZIP_CHUNK = 64 * 1024


def decode_body(raw: bytes, content_encoding: Optional[str], max_bytes: int) -> bytes:
    """Undo ``Content-Encoding`` (identity or gzip) without ever producing more than ``max_bytes``.

    Gzip is inflated incrementally with a bounded output size, so a small
    compressed body that would expand enormously (a "gzip bomb") is refused
    with 413 after at most ``max_bytes + 1`` bytes of output.
    """
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        if len(raw) > max_bytes:
            raise batch_too_large(len(raw), max_bytes)
        return raw
    if encoding not in ("gzip", "x-gzip"):
        raise RequestError(
            415, "unsupported_encoding", f"Content-Encoding {encoding!r} is not supported; use gzip or none"
        )
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = bytearray()
    pending = raw
    try:
        while True:
            room = max_bytes + 1 - len(out)
            chunk = inflater.decompress(pending, min(room, _GZIP_CHUNK))
            out += chunk
            if len(out) > max_bytes:
                raise batch_too_large(len(out), max_bytes, decompressed=True)
            pending = inflater.unconsumed_tail
            if inflater.eof or (not pending and not chunk):
                break
    except zlib.error as exc:
        raise RequestError(400, "invalid_gzip", f"the gzip body could not be decompressed: {exc}") from None
    if not inflater.eof:
        raise RequestError(400, "invalid_gzip", "the gzip body is truncated")
    return bytes(out)


def batch_too_large(size: int, limit: int, decompressed: bool = False) -> RequestError:
    """The 413 for a body of ``size`` bytes (after gunzip when ``decompressed``) over ``limit``."""
    what = "decompressed body" if decompressed else "body"
    more = "more than " if decompressed else ""
    return RequestError(
        413,
        "batch_too_large",
        f"the {what} is {more}{size} bytes; the limit is {limit} bytes per request, send smaller batches",
        {"size": size, "limit": limit},
    )


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (JSON has no NaN or infinities)")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text[:40]} is too large for a double (it would be read as infinity)")
    return value


def parse_json(body: bytes) -> Any:
    """Parse a UTF-8 JSON body strictly, or raise a 400 error.

    ``NaN``, ``Infinity`` and numbers too large for a double are refused
    (``invalid_json``), as is nesting too deep to parse (``nesting_too_deep``).
    """
    try:
        text = body.decode("utf-8")
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
        if re.search(r"\\u[dD][89a-fA-F]", text):
            # A lone surrogate ("\\ud83d", what JSON.stringify writes for an emoji cut in two) has
            # no UTF-8 form to store; like decoders that replace rather than refuse (Go's
            # encoding/json), read it as U+FFFD. Strict UTF-8 has none: only an escape makes one.
            units = json.dumps(value, ensure_ascii=False).encode("utf-16-le", "surrogatepass")
            value = json.loads(units.decode("utf-16-le", "replace"))
    except RecursionError:
        raise RequestError(
            400,
            "nesting_too_deep",
            f"the body is nested too deeply to parse; the limit is {MAX_NESTING_DEPTH} levels per message",
            {"limit": MAX_NESTING_DEPTH},
        ) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    return value


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON that is always valid: NaN and infinities (JSON has none) become null."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        text = json.dumps(
            replace_non_finite(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False
        )
    return text.encode("utf-8")


def nesting_error(value: Any, where: str, limit: int = MAX_NESTING_DEPTH) -> Optional[str]:
    """The path of the first object or array nested deeper than ``limit`` in ``value``, or None.

    ``value`` itself is level 1 (when it is an object or array); ``where`` names it in the path.
    """
    # Iterative, so a value nested deeper than Python's recursion limit is measured too.
    stack: list[tuple[Any, int, str]] = [(value, 1, where)]
    while stack:
        node, depth, path = stack.pop()
        if depth > limit:
            return path
        if isinstance(node, dict):
            for key, child in node.items():
                if isinstance(child, (dict, list)):
                    stack.append((child, depth + 1, f"{path}.{key}"))
        elif isinstance(node, list):
            for index, child in enumerate(node):
                if isinstance(child, (dict, list)):
                    stack.append((child, depth + 1, f"{path}[{index}]"))
    return None


# -- write keys ---------------------------------------------------------------


def write_key_from_auth(header: Optional[str]) -> Optional[str]:
    """The write key carried by an HTTP Basic ``Authorization`` header (the user name), or None.

    Raises a 401 error for a header that is present but not valid Basic auth.
    """
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise RequestError(401, "unauthorized", "the Authorization header must use the Basic scheme")
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise RequestError(401, "unauthorized", "the Authorization header is not valid Basic auth") from None
    return decoded.partition(":")[0]


# -- timestamps ---------------------------------------------------------------


def parse_timestamp(value: str) -> datetime:
    """Parse an ISO 8601 timestamp into an aware UTC datetime (no offset means UTC).

    Fractions beyond microseconds are truncated. Raises ValueError (a
    ``TimestampError``: parsing is ``segment_lite.timestamps``').
    """
    return parse_api_timestamp(value)


# -- validation and enrichment --------------------------------------------------


def _present(value: Any) -> bool:
    """An identifier counts when it is a non-empty string or a number."""
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, str):
        return value.strip() != ""
    return isinstance(value, (int, float))


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge two dicts; values from ``override`` win."""
    out = dict(base)
    for key, value in override.items():
        current = out.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            out[key] = _merge(current, value)
        else:
            out[key] = value
    return out


def _encoded_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def _timestamp_field(value: Any, where: str) -> Optional[datetime]:
    if value is None:
        return None
    if not isinstance(value, str):
        raise RequestError(400, "invalid_timestamp", f"{where} must be an ISO 8601 string")
    try:
        return parse_timestamp(value)
    except ValueError:
        raise RequestError(
            400, "invalid_timestamp", f"{where} is not an ISO 8601 timestamp: {value[:64]!r}"
        ) from None


def _check_nesting(value: Any, where: str, index: Optional[int], limit: int = MAX_NESTING_DEPTH) -> None:
    too_deep = nesting_error(value, where, limit)
    if too_deep is not None:
        details: dict[str, Any] = {"limit": MAX_NESTING_DEPTH, "path": too_deep}
        if index is not None:
            details["index"] = index
        raise RequestError(
            400,
            "nesting_too_deep",
            f"{too_deep} is nested too deeply: a message may nest objects and arrays "
            f"at most {MAX_NESTING_DEPTH} levels deep, counting the message itself",
            details,
        )


def _validate(message: dict[str, Any], where: str, index: Optional[int]) -> None:
    details: dict[str, Any] = {} if index is None else {"index": index}
    kind = message.get("type")
    if kind not in MESSAGE_TYPES:
        raise RequestError(
            400,
            "invalid_type",
            f"{where}.type must be one of {', '.join(MESSAGE_TYPES)} (got {kind!r})",
            {**details, "field": "type"},
        )

    message_id = message.get("messageId")
    if message_id is not None and (isinstance(message_id, bool) or not isinstance(message_id, (str, int))):
        raise RequestError(
            400,
            "invalid_message_id",
            f"{where}.messageId must be a string",
            {**details, "field": "messageId"},
        )

    def missing(name: str, why: str) -> RequestError:
        return RequestError(
            400, "missing_field", f"{where}.{name} is required {why}", {**details, "field": name}
        )

    if kind == "alias":
        if not _present(message.get("userId")):
            raise missing("userId", "for alias")
        if not _present(message.get("previousId")):
            raise missing("previousId", "for alias")
        return
    if not (_present(message.get("userId")) or _present(message.get("anonymousId"))):
        raise RequestError(
            400,
            "missing_field",
            f"{where}.userId or {where}.anonymousId is required for {kind}",
            {**details, "field": "userId"},
        )
    if kind == "track":
        event = message.get("event")
        if not isinstance(event, str) or not event.strip():
            raise missing("event", "for track")
    if kind == "group" and not _present(message.get("groupId")):
        raise missing("groupId", "for group")


def _enrich(
    message: dict[str, Any],
    where: str,
    index: Optional[int],
    received_at: datetime,
    batch_sent_at: Any,
    batch_context: Optional[dict[str, Any]],
    batch_integrations: Optional[dict[str, Any]],
) -> dict[str, Any]:
    details: dict[str, Any] = {} if index is None else {"index": index}
    out = dict(message)
    if batch_context is not None:
        own = out.get("context")
        out["context"] = _merge(batch_context, own if isinstance(own, dict) else {})
    if batch_integrations is not None:
        own = out.get("integrations")
        out["integrations"] = _merge(batch_integrations, own if isinstance(own, dict) else {})

    message_id = out.get("messageId")
    if message_id is None or message_id == "":
        out["messageId"] = f"collector-{uuid.uuid4()}"
    else:
        out["messageId"] = str(message_id)

    client_field = "timestamp" if out.get("timestamp") is not None else "originalTimestamp"
    client_raw = out.get(client_field)
    sent_raw = out.get("sentAt", batch_sent_at)
    sent_where = f"{where}.sentAt" if "sentAt" in out else "body.sentAt"
    try:
        client_ts = _timestamp_field(client_raw, f"{where}.{client_field}")
        sent_at = _timestamp_field(sent_raw, sent_where)
    except RequestError as exc:
        exc.details.update(details)
        raise
    out["receivedAt"] = format_utc(received_at)
    if sent_raw is not None:
        out["sentAt"] = sent_raw
    if client_ts is None:
        out["timestamp"] = format_utc(received_at)
    else:
        out["originalTimestamp"] = client_raw
        if sent_at is None:
            out["timestamp"] = format_utc(client_ts)
        else:
            # Segment's clock-skew correction: the client's clock may be wrong,
            # but the time between the call and the send is measured on that
            # same clock, so subtract it from the server's receive time.
            out["timestamp"] = format_utc(received_at - (sent_at - client_ts))
    return out


def prepare_messages(
    kind: str, payload: Any, received_at: datetime, limits: Optional[Limits] = None
) -> list[dict[str, Any]]:
    """Validate a parsed request body and return the messages to store, enriched.

    ``kind`` is ``"batch"`` for ``/v1/batch`` and ``/v1/import``, else the
    message type named by the single-call path. Any invalid message rejects
    the whole request (a :class:`RequestError` naming the first bad index).
    Returned messages carry ``messageId``, ``receivedAt``, ``timestamp``
    (clock-skew corrected) and ``originalTimestamp``; ``writeKey`` is removed.
    """
    limits = limits or Limits()
    received_at = received_at.astimezone(timezone.utc)
    received_at = received_at.replace(microsecond=received_at.microsecond // 1000 * 1000)
    if not isinstance(payload, dict):
        raise RequestError(400, "invalid_body", "the body must be a JSON object")

    if kind != "batch":
        message = dict(payload)
        message.pop("writeKey", None)
        message["type"] = kind
        _check_nesting(payload, "body", None)
        size = _encoded_size(payload)
        if size > limits.max_message_bytes:
            raise RequestError(
                400,
                "message_too_large",
                f"the message is {size} bytes; the limit is {limits.max_message_bytes} bytes per message",
                {"size": size, "limit": limits.max_message_bytes},
            )
        _validate(message, "body", None)
        return [_enrich(message, "body", None, received_at, None, None, None)]

    batch = payload.get("batch")
    if not isinstance(batch, list):
        raise RequestError(400, "invalid_batch", "body.batch must be a list of messages", {"field": "batch"})
    if len(batch) > limits.max_batch_messages:
        raise RequestError(
            413,
            "too_many_messages",
            f"the batch has {len(batch)} messages; the limit is {limits.max_batch_messages} per request,"
            " send smaller batches",
            {"count": len(batch), "limit": limits.max_batch_messages},
        )
    context = payload.get("context")
    integrations = payload.get("integrations")
    if context is not None and not isinstance(context, dict):
        raise RequestError(400, "invalid_batch", "body.context must be an object", {"field": "context"})
    if integrations is not None and not isinstance(integrations, dict):
        raise RequestError(
            400, "invalid_batch", "body.integrations must be an object", {"field": "integrations"}
        )
    for name, shared in (("context", context), ("integrations", integrations)):
        # Merged into every message, one level below the message object.
        _check_nesting(shared, f"body.{name}", None, MAX_NESTING_DEPTH - 1)
    batch_sent_at = payload.get("sentAt")
    _timestamp_field(batch_sent_at, "body.sentAt")

    out: list[dict[str, Any]] = []
    for index, item in enumerate(batch):
        where = f"batch[{index}]"
        if not isinstance(item, dict):
            raise RequestError(400, "invalid_message", f"{where} must be a JSON object", {"index": index})
        _check_nesting(item, where, index)
        size = _encoded_size(item)
        if size > limits.max_message_bytes:
            raise RequestError(
                400,
                "message_too_large",
                f"{where} is {size} bytes; the limit is {limits.max_message_bytes} bytes per message",
                {"index": index, "size": size, "limit": limits.max_message_bytes},
            )
        message = dict(item)
        message.pop("writeKey", None)
        _validate(message, where, index)
        out.append(_enrich(message, where, index, received_at, batch_sent_at, context, integrations))
    return out
