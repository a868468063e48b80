"""A fast loopback sink for ``POST /v1/batch``, meant to run in its own process.

It is built on stdlib ``asyncio`` streams with a small HTTP/1.1 parser (keep-alive,
``Content-Length`` or chunked bodies, gzip), so it needs nothing from PyPI. For each
batch it decompresses the body if needed, parses the JSON, checks the write key and
counts the messages by ``messageId``; it answers ``{"success": true}``.

Control endpoints, for the benchmark driver and workers:

* ``GET /stats``  - counters as JSON (``unique``, ``messages``, ``batches``,
  ``body_bytes``, ``bad_requests``, ``max_batch`` = most messages in one request,
  ``cpu_s`` = this process's CPU time);
* ``POST /reset`` - forget every messageId and zero the counters.

``POST /batch/`` takes PostHog's batch format too (``api_key`` in the body, events
counted by ``uuid``), so PostHog's clients can be measured against the same sink.
``--delay-ms`` answers every batch that much later (a slow server).

Run it with ``python -m benchmarks.sink [--port P] [--write-key K]``; it prints
``PORT <n>`` on its first line of output once it listens, and stops on SIGTERM/SIGINT
or after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import json
import signal
import sys
import time
from typing import Any, Callable, Optional

try:  # parsing is the sink's main cost; orjson, when present, keeps it far from a bottleneck
    import orjson

    _loads: Callable[[bytes], Any] = orjson.loads
    _dumps: Callable[[Any], bytes] = orjson.dumps
except ImportError:  # pragma: no cover - depends on the environment
    _loads = json.loads

    def _dumps(value: Any) -> bytes:
        return json.dumps(value).encode()


__all__ = ["DEFAULT_WRITE_KEY", "Sink", "main"]

DEFAULT_WRITE_KEY = "bench-write-key"
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024

_OK_BODY = b'{"success": true}'
_REASONS = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 404: b"Not Found", 413: b"Too Large"}


class BadRequest(Exception):
    """A request the sink refuses; answered with ``status`` and the message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Sink:
    """Counters of what the sink received, and the handling of one request."""

    def __init__(self, write_key: str = DEFAULT_WRITE_KEY, delay_s: float = 0.0) -> None:
        self.write_key = write_key
        self.delay_s = delay_s  # how much later each batch is answered
        self._auth = b"Basic " + base64.b64encode(f"{write_key}:".encode())
        self.reset()

    def reset(self) -> None:
        """Forget every messageId and zero the counters."""
        self.ids: set[str] = set()
        self.messages = 0
        self.batches = 0
        self.body_bytes = 0
        self.bad_requests = 0
        self.max_batch = 0

    def stats(self) -> dict[str, Any]:
        """The counters, plus this process's CPU time so a caller can compute the sink's load."""
        return {
            "unique": len(self.ids),
            "messages": self.messages,
            "batches": self.batches,
            "body_bytes": self.body_bytes,
            "bad_requests": self.bad_requests,
            "max_batch": self.max_batch,
            "cpu_s": time.process_time(),
        }

    def handle(self, method: bytes, target: bytes, headers: dict[bytes, bytes], body: bytes) -> bytes:
        """Route one request; returns the JSON body of a 200 answer or raises ``BadRequest``."""
        path = target.split(b"?", 1)[0]
        if method == b"POST" and path in (b"/v1/batch", b"/batch/"):
            self._batch(headers, body)
            return _OK_BODY
        if method == b"GET" and path == b"/stats":
            return _dumps(self.stats())
        if method == b"POST" and path == b"/reset":
            self.reset()
            return _OK_BODY
        raise BadRequest(404, f"no route for {method.decode()} {path.decode()}")

    def _batch(self, headers: dict[bytes, bytes], body: bytes) -> None:
        self.body_bytes += len(body)
        if headers.get(b"content-encoding", b"").lower() == b"gzip":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError) as exc:
                raise BadRequest(400, f"bad gzip body: {exc}") from None
        try:
            payload = _loads(body)
        except ValueError as exc:
            raise BadRequest(400, f"body is not JSON: {exc}") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("batch"), list):
            raise BadRequest(400, "body must be an object with a 'batch' list")
        if (
            payload.get("writeKey") != self.write_key
            and payload.get("api_key") != self.write_key
            and headers.get(b"authorization") != self._auth
        ):
            raise BadRequest(401, "wrong write key")
        batch = payload["batch"]
        ids = self.ids
        for message in batch:
            message_id = (
                (message.get("messageId") or message.get("uuid")) if isinstance(message, dict) else None
            )
            if not isinstance(message_id, str):
                raise BadRequest(400, "a message has no messageId")
            ids.add(message_id)
        self.messages += len(batch)
        self.batches += 1
        self.max_batch = max(self.max_batch, len(batch))


def _response(status: int, body: bytes, keep_alive: bool) -> bytes:
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Error")),
            b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body),
            b"Connection: keep-alive\r\n\r\n" if keep_alive else b"Connection: close\r\n\r\n",
            body,
        )
    )


async def _read_body(reader: asyncio.StreamReader, headers: dict[bytes, bytes]) -> bytes:
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        parts = []
        total = 0
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers are expected
                return b"".join(parts)
            total += size
            if total > MAX_BODY_BYTES:
                raise BadRequest(413, "body too large")
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length = int(headers.get(b"content-length", b"0"))
    if length > MAX_BODY_BYTES:
        raise BadRequest(413, "body too large")
    return await reader.readexactly(length) if length else b""


def _parse_head(head: bytes) -> tuple[bytes, bytes, bytes, dict[bytes, bytes]]:
    lines = head[:-4].split(b"\r\n")
    try:
        method, target, version = lines[0].split(b" ", 2)
    except ValueError:
        raise BadRequest(400, "bad request line") from None
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return method, target, version, headers


async def _serve_connection(sink: Sink, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            try:
                method, target, version, headers = _parse_head(head)
                keep_alive = version == b"HTTP/1.1" and headers.get(b"connection", b"").lower() != b"close"
                body = await _read_body(reader, headers)
                status, answer = 200, sink.handle(method, target, headers, body)
                if sink.delay_s and method == b"POST" and b"batch" in target:
                    await asyncio.sleep(sink.delay_s)
            except BadRequest as exc:
                sink.bad_requests += 1
                status, answer, keep_alive = (
                    exc.status,
                    _dumps({"success": False, "message": str(exc)}),
                    False,
                )
            except (ValueError, asyncio.LimitOverrunError):
                sink.bad_requests += 1
                status, answer, keep_alive = 400, _dumps({"success": False, "message": "malformed"}), False
            writer.write(_response(status, answer, keep_alive))
            if not keep_alive:
                await writer.drain()
                return
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    finally:
        writer.close()


async def serve(
    sink: Sink,
    host: str = "127.0.0.1",
    port: int = 0,
    ready: Optional[Callable[[int], None]] = None,
    max_seconds: Optional[float] = None,
) -> None:
    """Serve ``sink`` until cancelled, SIGTERM/SIGINT, or ``max_seconds`` passed."""
    server = await asyncio.start_server(
        lambda r, w: _serve_connection(sink, r, w), host, port, limit=MAX_HEADER_BYTES, backlog=128
    )
    bound = server.sockets[0].getsockname()[1]
    stop = asyncio.get_running_loop().create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            asyncio.get_running_loop().add_signal_handler(
                signum, lambda: stop.done() or stop.set_result(None)
            )
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not on the main thread / Windows
            pass
    if ready is not None:
        ready(bound)
    async with server:
        try:
            await asyncio.wait_for(stop, max_seconds)
        except asyncio.TimeoutError:
            pass


def main(argv: Optional[list[str]] = None) -> None:
    """Command line entry point: ``python -m benchmarks.sink``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--write-key", default=DEFAULT_WRITE_KEY)
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="stop by itself after this long")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="answer each batch this much later")
    args = parser.parse_args(argv)

    def ready(port: int) -> None:
        print(f"PORT {port}", flush=True)

    asyncio.run(
        serve(Sink(args.write_key, args.delay_ms / 1000), args.host, args.port, ready, args.max_seconds)
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
