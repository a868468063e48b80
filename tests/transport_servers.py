"""Small loopback servers for transport tests: an HTTP proxy, a TLS endpoint, a server that never answers."""

from __future__ import annotations

import http.client
import http.server
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, BinaryIO, Optional
from urllib.parse import urlsplit

OK_BODY = b'{"success": true}'


@dataclass
class ProxiedRequest:
    """What the proxy saw: ``CONNECT host:port`` or a forwarded ``POST http://...``."""

    method: str
    target: str
    proxy_authorization: Optional[str]


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _record(self) -> None:
        self.server.record(ProxiedRequest(self.command, self.path, self.headers.get("Proxy-Authorization")))

    def do_POST(self) -> None:  # a forwarded request: the target is an absolute URL
        self._record()
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        parts = urlsplit(self.path)
        upstream = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-authorization", "host")}
        upstream.request("POST", parts.path + (f"?{parts.query}" if parts.query else ""), body, headers)
        answer = upstream.getresponse()
        data = answer.read()
        upstream.close()
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.getheader("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_CONNECT(self) -> None:  # a tunnel: relay bytes both ways
        self._record()
        host, _, port = self.path.rpartition(":")
        upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        client = self.connection
        try:
            while True:
                readable, _, _ = select.select([client, upstream], [], [], 10)
                if not readable:
                    return
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    (upstream if source is client else client).sendall(data)
        finally:
            upstream.close()
            self.close_connection = True


class ProxyServer(http.server.ThreadingHTTPServer):
    """A forwarding and CONNECT proxy on 127.0.0.1 that records what went through it."""

    daemon_threads = True

    def __init__(self, context: Optional[ssl.SSLContext] = None) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.scheme = "http" if context is None else "https"
        if context is not None:  # an https:// proxy: TLS between the client and the proxy
            self.socket = context.wrap_socket(self.socket, server_side=True)
        self.seen: list[ProxiedRequest] = []
        self._lock = threading.Lock()
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://localhost:{self.server_address[1]}"

    def record(self, request: ProxiedRequest) -> None:
        with self._lock:
            self.seen.append(request)

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _TLSHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.posts += 1  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(OK_BODY)))
        self.end_headers()
        self.wfile.write(OK_BODY)


class TLSServer(http.server.ThreadingHTTPServer):
    """An HTTPS endpoint on 127.0.0.1 answering 200 to every POST, with the given certificate."""

    daemon_threads = True

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _TLSHandler)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.posts = 0
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # failed handshakes are what some tests are about

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _LoopbackListener:
    """A listener on 127.0.0.1 whose accept loop hands each connection to ``_handle``, in turn.

    Subclasses set their own attributes before calling ``__init__``: the loop starts there.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # stopped
                return
            self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._listener.close()


def _read_head(reader: BinaryIO) -> tuple[bytes, int]:
    """One request's head, up to its blank line, and its Content-Length (b"" once the client closed)."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = reader.readline()
        if not line:
            break
        head += line
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, length


class SilentServer(_LoopbackListener):
    """Accepts connections and reads requests but never answers; ``received`` is set on the first bytes.

    ``hung_up`` is set when a client closes a connection (as an aborted request does).
    """

    def __init__(self) -> None:
        self.received = threading.Event()
        self.hung_up = threading.Event()
        self._connections: list[socket.socket] = []
        super().__init__()

    def _handle(self, conn: socket.socket) -> None:
        self._connections.append(conn)
        threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        try:
            while conn.recv(65536):
                self.received.set()
        except OSError:
            pass
        self.hung_up.set()

    def stop(self) -> None:
        super().stop()
        for conn in self._connections:
            conn.close()


class FullBacklogServer:
    """A listener that never accepts, its backlog filled: a connection attempt to it hangs in SYN_SENT."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)
        self._fillers: list[socket.socket] = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(self._listener.getsockname())
            self._fillers.append(filler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def stop(self) -> None:
        for sock in (*self._fillers, self._listener):
            sock.close()


class CannedServer(_LoopbackListener):
    """Answers every request with the same raw bytes, then closes: for responses cut off mid-way."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        super().__init__()

    def _handle(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            # Read the whole request, so closing sends a FIN and not a reset.
            _, length = _read_head(reader)
            reader.read(length)
            conn.sendall(self.answer)


class ScriptedServer(_LoopbackListener):
    """Answers each request with the next of ``answers`` (raw bytes), closing the connection after
    the answers listed in ``close_after`` (indexes) or when they run out."""

    def __init__(
        self, answers: list[bytes], close_after: tuple[int, ...] = (), read_body: bool = True
    ) -> None:
        self._read_body = read_body
        self._answers = list(answers)
        self._close_after = set(close_after)
        self.connections = 0
        self.requests: list[bytes] = []
        super().__init__()

    @property
    def url(self) -> str:
        return f"{super().url}/v1/batch"

    def _handle(self, conn: socket.socket) -> None:
        self.connections += 1
        try:
            self._answer(conn)
        except OSError:  # the client went away
            pass

    def _answer(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            while self._answers:
                head, length = _read_head(reader)
                if not head:
                    break
                if not self._read_body:  # answer at once and close, the body unread
                    self.requests.append(head)
                    conn.sendall(self._answers.pop(0))
                    time.sleep(0.05)  # the answer reaches the client before the close resets the connection
                    break
                self.requests.append(head + reader.read(length))
                index = len(self.requests) - 1
                conn.sendall(self._answers.pop(0))
                if index in self._close_after:
                    break
            conn.shutdown(socket.SHUT_RDWR)  # the reader holds the socket open otherwise
