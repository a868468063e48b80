"""Both transports against real loopback servers: failures classified, proxies, TLS, netrc, abort."""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import trustme
import urllib3

import segment_lite.transport
from segment_lite.errors import RetriesExhaustedError
from segment_lite.request import ReferenceSeamTransport
from segment_lite.transport import (
    Aborted,
    ConnectionClosed,
    MalformedResponse,
    RequestsTransport,
    StaleConnection,
    Transport,
    TransportError,
    Urllib3Transport,
    _failure,
    ca_bundle,
    default_transport_factory,
    proxy_for,
)
from tests.conftest import WRITE_KEY
from tests.transport_servers import (
    CannedServer,
    FullBacklogServer,
    ProxyServer,
    ScriptedServer,
    SilentServer,
    TLSServer,
)

TRANSPORTS = [Urllib3Transport, RequestsTransport]
BODY = b'{"batch":[{"type":"track","event":"E","userId":"u","messageId":"m-1"}]}'
HEADERS = {"Content-Type": "application/json"}
ENVIRONMENT = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy or CA bundle variables from the machine leak into these tests."""
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def proxies() -> Iterator[tuple[ProxyServer, ProxyServer]]:
    first, second = ProxyServer(), ProxyServer()
    yield first, second
    first.stop()
    second.stop()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[TLSServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    server = TLSServer(context)
    yield server
    server.stop()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Any) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def post(transport: Transport, url: str, timeout: float = 5) -> int:
    return transport.post(url, BODY, HEADERS, timeout).status


# -- classification ------------------------------------------------------------------


def wrapped(cause: BaseException) -> requests.exceptions.ConnectionError:
    """A failure nested the way requests and urllib3 nest it."""
    return requests.exceptions.ConnectionError(urllib3.exceptions.ProtocolError("Connection aborted.", cause))


@pytest.mark.parametrize(
    ("error", "stale"),
    [
        (wrapped(http.client.RemoteDisconnected("Remote end closed connection without response")), True),
        (wrapped(ConnectionResetError(104, "Connection reset by peer")), True),
        (wrapped(BrokenPipeError(32, "Broken pipe")), True),
        (http.client.RemoteDisconnected("Remote end closed connection without response"), True),
        (requests.exceptions.ConnectionError(ConnectionRefusedError(111, "Connection refused")), False),
        (requests.exceptions.ConnectionError("Name or service not known"), False),
    ],
)
def test_stale_connection_classification(error, stale) -> None:
    failure = _failure(error, "http://127.0.0.1:1/v1/batch", 5, reused=True)
    assert isinstance(failure, StaleConnection) is stale


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_only_a_reused_connection_can_be_stale(collector, kind) -> None:
    transport = kind()
    url = collector.url + "/v1/batch"
    collector.reset_next(1)
    with pytest.raises(TransportError) as first:
        post(transport, url)
    assert not isinstance(first.value, StaleConnection)  # a fresh connection: a real failure, back off
    assert post(transport, url) == 200
    collector.reset_next(1)
    with pytest.raises(TransportError) as second:
        post(transport, url)
    assert isinstance(second.value, StaleConnection)  # a pooled connection died: retry at once
    transport.close()


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_refused_connection_is_not_stale_nor_a_timeout(collector, kind, monkeypatch) -> None:
    monkeypatch.setattr(segment_lite.transport, "IDLE_CHECK_S", 0.0)  # notice the closed connection first
    transport = kind()
    url = collector.url + "/v1/batch"
    assert post(transport, url) == 200
    collector.go_down()
    with pytest.raises(TransportError) as refused:
        post(transport, url)
    assert not isinstance(refused.value, StaleConnection)
    assert "timed out" not in str(refused.value)
    assert "refused" in str(refused.value).lower()


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_read_timeout_is_reported_as_a_timeout(collector, kind) -> None:
    transport = kind()
    collector.delay_next(1, seconds=3)
    with pytest.raises(TransportError, match=r"timed out after 0.2s"):
        post(transport, collector.url + "/v1/batch", timeout=0.2)
    transport.close()


def test_a_busy_connection_is_reused_without_a_check_and_a_closed_one_is_stale(collector) -> None:
    transport = Urllib3Transport()
    url = collector.url + "/v1/batch"
    assert post(transport, url) == 200  # just answered: the next post does not poll the socket first
    collector.go_down()
    with pytest.raises(TransportError) as closed:
        post(transport, url)
    assert isinstance(closed.value, StaleConnection)  # the sender retries such a batch at once
    with pytest.raises(TransportError) as refused:
        post(transport, url)
    assert not isinstance(refused.value, StaleConnection) and "refused" in str(refused.value)


def test_connections_are_kept_alive(collector) -> None:
    transport = Urllib3Transport()
    url = collector.url + "/v1/batch"
    for _ in range(5):
        assert post(transport, url) == 200
    assert collector.open_connections == 1
    transport.close()


def test_a_connection_the_server_closed_while_idle_is_replaced_without_an_error(
    collector, monkeypatch
) -> None:
    monkeypatch.setattr(segment_lite.transport, "IDLE_CHECK_S", 0.0)  # check before every reuse
    transport = Urllib3Transport()
    url = collector.url + "/v1/batch"
    assert post(transport, url) == 200
    collector.close_idle_connections()
    for _ in range(200):  # until the close reaches this side of the connection
        if transport._conn is None or not transport._conn.is_connected:
            break
        time.sleep(0.005)
    assert post(transport, url) == 200  # no TransportError, not even a stale one
    transport.close()


def test_the_default_transport_is_urllib3_and_receives_the_clients_proxies(proxies) -> None:
    factory = default_transport_factory(None, {"http": proxies[0].url})
    transport = factory()
    assert isinstance(transport, Urllib3Transport)
    assert transport._proxies == {"http": proxies[0].url}
    requests_transport = default_transport_factory(RequestsTransport, {"http": proxies[0].url})()
    assert isinstance(requests_transport, RequestsTransport)
    assert requests_transport._proxies == {"http": proxies[0].url}
    custom = object()
    assert default_transport_factory(lambda: custom, None)() is custom  # type: ignore[arg-type, return-value]


# -- reading answers (the default transport reads them itself) -------------------------

OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{"success":true}'


@pytest.fixture
def scripted() -> Iterator[Any]:
    servers: list[ScriptedServer] = []

    def start(answers: list[bytes], close_after: tuple[int, ...] = ()) -> ScriptedServer:
        servers.append(ScriptedServer(answers, close_after))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.mark.parametrize(
    "cut",
    [
        b"HTTP/1.1 200 OK\r\n",  # the status line, then nothing
        b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\n",  # headers never ended
        b'HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n{"succ',  # body shorter than announced
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",  # no last chunk
        b"",  # closed without a word
    ],
)
def test_an_answer_cut_off_is_an_error_not_a_delivery(scripted, cut) -> None:
    server = scripted([cut], close_after=(0,))
    with pytest.raises(TransportError):
        post(Urllib3Transport(), server.url)


def test_chunked_interim_and_close_delimited_answers_are_read(scripted) -> None:
    server = scripted(
        [
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\r\nno length: read to the close",
            OK,
        ],
        close_after=(1,),
    )
    transport = Urllib3Transport()
    first = transport.post(server.url, BODY, HEADERS, 5)
    assert (first.status, first.body) == (200, b"hello world")
    second = transport.post(server.url, BODY, HEADERS, 5)
    assert (second.status, second.body) == (400, b"no length: read to the close")
    assert second.headers["content-type"] == "text/plain"  # names are case-insensitive
    assert post(transport, server.url) == 200
    assert server.connections == 2  # the close-delimited answer ended the first connection


def test_repeated_and_folded_headers_are_read(scripted) -> None:
    server = scripted(
        [
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After:\r\n  7\r\nX-Seen: a\r\nx-seen: b\r\n"
            b"Content-Length: 0\r\n\r\n"
        ]
    )
    answer = Urllib3Transport().post(server.url, BODY, HEADERS, 5)
    assert answer.status == 429
    assert answer.headers.get("Retry-After") == "7"
    assert answer.headers["X-Seen"] == "a, b"


def test_the_request_head_is_urllib3_s_and_framing_headers_of_the_caller_are_honoured(scripted) -> None:
    server = scripted([OK, OK])
    transport = Urllib3Transport()
    assert post(transport, server.url) == 200
    # Exactly the lines urllib3's request() writes for a bytes body, in its order.
    head = server.requests[0][: -len(BODY)]
    lines = head.decode("latin-1").split("\r\n")
    assert lines[:4] == [
        "POST /v1/batch HTTP/1.1",
        f"Host: {urlsplit(server.url).netloc}",
        "Accept-Encoding: identity",
        f"Content-Length: {len(BODY)}",
    ]
    assert lines[4:-2] == [f"{name}: {value}" for name, value in HEADERS.items()]
    # A caller's Host replaces http.client's rather than adding a second one.
    assert transport.post(server.url, BODY, {**HEADERS, "Host": "api.example.test"}, 5).status == 200
    second = server.requests[1].decode("latin-1")
    assert second.count("\r\nHost: ") == 1 and "\r\nHost: api.example.test\r\n" in second


def test_a_folded_header_of_a_2xx_is_unfolded_when_read(scripted) -> None:
    server = scripted([b"HTTP/1.1 200 OK\r\nX-Note:\r\n  a\r\n  b\r\nContent-Length: 2\r\n\r\nok"])
    answer = Urllib3Transport().post(server.url, BODY, HEADERS, 5)
    assert (answer.status, answer.body) == (200, b"ok")
    assert answer.headers["x-note"] == "a b"
    assert dict(answer.headers) == {"X-Note": "a b", "Content-Length": "2"}


def test_connection_close_opens_a_new_connection_and_keep_alive_reuses_one(scripted) -> None:
    server = scripted(
        [OK, OK.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1), OK], close_after=(1,)
    )
    transport = Urllib3Transport()
    assert [post(transport, server.url) for _ in range(3)] == [200, 200, 200]
    assert server.connections == 2
    first_request = server.requests[0]
    assert first_request.startswith(b"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"Content-Length: %d\r\n" % len(BODY) in first_request and first_request.endswith(BODY)


def test_a_refusal_sent_before_the_body_was_read_is_the_answer(scripted) -> None:
    refusal = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large"
    server = ScriptedServer([refusal], read_body=False)
    try:
        answer = Urllib3Transport().post(server.url, b"x" * (16 * 1024 * 1024), HEADERS, 10)
        assert (answer.status, answer.body) == (413, b"too large")
    finally:
        server.stop()


def test_a_success_sent_before_the_body_was_read_is_not_a_delivery(scripted) -> None:
    server = ScriptedServer([OK], read_body=False)
    try:
        with pytest.raises(TransportError):
            Urllib3Transport().post(server.url, b"x" * (16 * 1024 * 1024), HEADERS, 10)
    finally:
        server.stop()


def test_a_huge_answer_is_cut_and_its_connection_closed(scripted) -> None:
    size = 3 * 1024 * 1024
    server = scripted([b"HTTP/1.1 503 Busy\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size, OK])
    transport = Urllib3Transport()
    answer = transport.post(server.url, BODY, HEADERS, 5)
    assert answer.status == 503 and len(answer.body) == 1024 * 1024
    assert transport._conn is None  # the rest was never read: that connection cannot be reused


def test_a_post_interrupted_mid_way_never_leaves_its_connection_for_the_next(scripted, monkeypatch) -> None:
    server = scripted([OK, OK.replace(b"true", b"TRUE"), OK.replace(b"true", b"True")])
    transport = Urllib3Transport()
    assert post(transport, server.url) == 200
    real_read = segment_lite.transport._read_body

    def interrupted(response):
        raise KeyboardInterrupt  # as if Ctrl-C landed while the answer was on its way

    monkeypatch.setattr(segment_lite.transport, "_read_body", interrupted)
    with pytest.raises(KeyboardInterrupt):
        post(transport, server.url)
    monkeypatch.setattr(segment_lite.transport, "_read_body", real_read)
    # The second answer is still unread on the old connection: reading it as the answer to
    # the third request would mismatch answers and requests.
    answer = transport.post(server.url, BODY, HEADERS, 5)
    assert answer.body != OK.replace(b"true", b"TRUE").split(b"\r\n\r\n")[1]
    assert server.connections == 2


@pytest.mark.parametrize("kind", TRANSPORTS)
@pytest.mark.parametrize(
    "status_line",
    [b"HTTP/1.1 2000 OK", b"HTTP/1.1 200x", b"HTTP/1.1 200x OK", b"HTTP/1.1 200OK", b"HTTP/1.1 20 OK"],
)
def test_a_malformed_status_line_is_not_a_delivery(scripted, kind, status_line) -> None:
    """Only three digits make a status: "2000" or "200x" is not a 200 (issue 22, defect 13)."""
    server = scripted([status_line + b'\r\nContent-Length: 16\r\n\r\n{"success":true}'])
    with pytest.raises(MalformedResponse, match=f"127.0.0.1:{server.port} sent a malformed response"):
        post(kind(), server.url)
    assert len(server.requests) == 1


def test_a_malformed_status_line_leaves_the_batch_undelivered(scripted, make_client) -> None:
    server = scripted([b'HTTP/1.1 2000 OK\r\nContent-Length: 16\r\n\r\n{"success":true}'] * 3)
    client = make_client(host=server.url.removesuffix("/v1/batch"), max_retries=1, sync_mode=True)
    with pytest.raises(RetriesExhaustedError, match="malformed response"):
        client.track("u", "Not delivered")
    stats = client.stats()
    assert stats["delivered"] == 0 and len(server.requests) == 1


def test_header_injection_is_refused(scripted) -> None:
    server = scripted([OK])
    with pytest.raises(TransportError, match="line break"):
        Urllib3Transport().post(server.url, BODY, {"X-Evil": "a\r\nX-Injected: 1"}, 5)
    assert server.requests == []


# -- proxies --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_proxy_from_the_environment_is_used(collector, proxies, monkeypatch, kind) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxies[0].url)
    transport = kind()
    assert post(transport, collector.url + "/v1/batch") == 200
    assert [(r.method, r.target) for r in proxies[0].seen] == [("POST", collector.url + "/v1/batch")]
    assert collector.wait_for_messages(1)


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_explicit_proxies_win_over_the_environment(collector, proxies, monkeypatch, kind) -> None:
    environment_proxy, explicit_proxy = proxies
    monkeypatch.setenv("HTTP_PROXY", environment_proxy.url)
    transport = kind(proxies={"http": explicit_proxy.url})
    assert post(transport, collector.url + "/v1/batch") == 200
    assert post(transport, collector.url + "/v1/batch") == 200
    assert environment_proxy.seen == []
    assert len(explicit_proxy.seen) == 2


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_no_proxy_sends_direct(collector, proxies, monkeypatch, kind) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxies[0].url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert post(kind(), collector.url + "/v1/batch") == 200
    assert proxies[0].seen == []
    assert collector.wait_for_messages(1)


def test_proxy_for_follows_requests_rules(monkeypatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://env-proxy:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    assert proxy_for("https://api.segment.io/v1/batch") == "http://env-proxy:3128"
    assert proxy_for("https://api.segment.io/v1/batch", {"https": "http://mine:1"}) == "http://mine:1"
    assert proxy_for("https://internal.example/v1/batch") is None
    assert proxy_for("http://api.segment.io/v1/batch") is None  # no HTTP_PROXY
    assert proxy_for("http://api.segment.io/v1/batch", {"all": "http://any:2"}) == "http://any:2"


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_proxy_credentials_are_sent_to_the_proxy_and_never_shown(collector, proxies, kind) -> None:
    transport = kind(proxies={"http": proxies[0].url.replace("http://", "http://alice:s3cret@")})
    assert post(transport, collector.url + "/v1/batch") == 200
    expected = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert proxies[0].seen[0].proxy_authorization == expected
    assert "Proxy-Authorization" not in collector.requests[0].headers


def test_https_goes_through_a_connect_tunnel(tls_server, proxies, ca_file, monkeypatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxies[0].url)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    transport = Urllib3Transport()
    assert post(transport, f"https://localhost:{tls_server.port}/v1/batch") == 200
    assert post(transport, f"https://localhost:{tls_server.port}/v1/batch") == 200
    assert [(r.method, r.target) for r in proxies[0].seen] == [("CONNECT", f"localhost:{tls_server.port}")]
    assert tls_server.posts == 2


def test_an_https_proxy_is_spoken_to_over_verified_tls(collector, ca, ca_file, monkeypatch) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost").configure_cert(context)
    proxy = ProxyServer(context)
    try:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        with pytest.raises(TransportError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            post(Urllib3Transport(), collector.url + "/v1/batch")  # the proxy's CA is not trusted
        assert post(Urllib3Transport(verify=ca_file), collector.url + "/v1/batch") == 200
        assert [r.method for r in proxy.seen] == ["POST"]
    finally:
        proxy.stop()


def test_socks_proxies_are_refused_with_a_pointer_to_the_requests_transport(collector) -> None:
    transport = Urllib3Transport(proxies={"http": "socks5://user:pw@127.0.0.1:1080"})
    with pytest.raises(TransportError, match="RequestsTransport") as refused:
        post(transport, collector.url + "/v1/batch")
    assert "pw" not in str(refused.value)


@pytest.mark.parametrize("transport_option", [None, RequestsTransport])
def test_client_proxies_win_over_the_environment(
    collector, proxies, monkeypatch, make_client, transport_option
) -> None:
    environment_proxy, explicit_proxy = proxies
    monkeypatch.setenv("HTTP_PROXY", environment_proxy.url)
    client = make_client(proxies={"http": explicit_proxy.url}, transport=transport_option, sync_mode=True)
    client.track("u", "Proxied")
    assert collector.wait_for_messages(1)
    assert environment_proxy.seen == [] and len(explicit_proxy.seen) == 1


# -- TLS --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_an_untrusted_certificate_fails_verification(tls_server, kind) -> None:
    with pytest.raises(
        TransportError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"
    ) as failed:
        post(kind(), f"https://localhost:{tls_server.port}/v1/batch")
    assert str(failed.value).startswith(
        f"TLS error with localhost:{tls_server.port}: certificate verify failed"
    )
    assert tls_server.posts == 0


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_requests_ca_bundle_is_honoured(tls_server, ca_file, monkeypatch, kind) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    assert post(kind(), f"https://localhost:{tls_server.port}/v1/batch") == 200


def test_ssl_cert_file_is_honoured(tls_server, ca_file, monkeypatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    assert ca_bundle() == ca_file
    assert post(Urllib3Transport(), f"https://localhost:{tls_server.port}/v1/batch") == 200


def test_certifi_is_the_default_bundle() -> None:
    import certifi

    assert ca_bundle() == certifi.where()


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
@pytest.mark.parametrize("kind", TRANSPORTS)
def test_verify_takes_a_bundle_path_or_false(tls_server, ca_file, kind) -> None:
    assert post(kind(verify=ca_file), f"https://localhost:{tls_server.port}/v1/batch") == 200
    assert post(kind(verify=False), f"https://localhost:{tls_server.port}/v1/batch") == 200


def test_the_hostname_is_checked(ca, ca_file) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("collector.example").configure_cert(context)  # not 127.0.0.1 nor localhost
    server = TLSServer(context)
    try:
        with pytest.raises(TransportError, match=r"match|mismatch"):
            post(Urllib3Transport(verify=ca_file), f"https://127.0.0.1:{server.port}/v1/batch")
        assert server.posts == 0
    finally:
        server.stop()


def test_a_missing_ca_bundle_is_a_clear_transport_error(tls_server, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with pytest.raises(TransportError, match="cannot load the TLS CA bundle"):
        post(Urllib3Transport(), f"https://localhost:{tls_server.port}/v1/batch")


# -- netrc ------------------------------------------------------------------------------


@pytest.mark.parametrize("transport_option", [None, RequestsTransport])
def test_netrc_credentials_never_replace_the_write_key(
    collector, make_client, tmp_path, monkeypatch, transport_option
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone-else password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    client = make_client(sync_mode=True, transport=transport_option)
    client.track("u", "Authenticated")
    expected = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    assert collector.requests[0].headers["Authorization"] == expected


# -- abort --------------------------------------------------------------------------------


def _post_in_thread(transport: Transport, url: str) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            post(transport, url, timeout=30)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_abort_ends_a_post_waiting_for_its_response(kind) -> None:
    server = SilentServer()
    try:
        transport = kind()
        thread, errors = _post_in_thread(transport, server.url + "/v1/batch")
        assert server.received.wait(10)
        transport.abort()
        thread.join(10)  # the read timeout is 30 s
        assert not thread.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], TransportError)
        assert isinstance(errors[0], Aborted) and not isinstance(errors[0], StaleConnection)
    finally:
        server.stop()


def _connecting_to(port: int) -> int:
    """Sockets of this machine in SYN_SENT towards 127.0.0.1:``port`` (Linux's /proc/net/tcp)."""
    syn_sent = "02"
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return sum(1 for row in rows if int(row[2].split(":")[1], 16) == port and row[3] == syn_sent)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the TCP state (/proc/net/tcp)")
@pytest.mark.parametrize("kind", TRANSPORTS)
def test_abort_ends_a_post_stuck_connecting(kind, monkeypatch) -> None:
    # Until connected there is no socket to shut down: the connect timeout bounds the abort.
    monkeypatch.setattr(segment_lite.transport, "CONNECT_TIMEOUT_S", 2.0)
    server = FullBacklogServer()
    port = int(server.url.rsplit(":", 1)[1])
    try:
        transport = kind()
        before = _connecting_to(port)  # the server's own backlog fillers
        thread, errors = _post_in_thread(transport, server.url + "/v1/batch")
        for _ in range(1000):
            if _connecting_to(port) > before:
                break
            time.sleep(0.005)
        assert _connecting_to(port) > before
        transport.abort()
        thread.join(10)  # the post's timeout is 30 s
        assert not thread.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], TransportError) and isinstance(errors[0], Aborted)
    finally:
        server.stop()


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_abort_without_a_post_in_flight_does_nothing(collector, kind) -> None:
    transport = kind()
    url = collector.url + "/v1/batch"
    transport.abort()
    assert post(transport, url) == 200
    transport.abort()
    assert post(transport, url) == 200


def test_a_default_client_posts_with_the_urllib3_transport(collector, make_client) -> None:
    client = make_client(sync_mode=True)
    client.track("u", "Default transport")
    transport = client._transport_factory()
    # Wrapped so that tests patching the reference's post or _session.post still see requests.
    assert isinstance(transport, ReferenceSeamTransport) and isinstance(transport.inner, Urllib3Transport)
    assert collector.requests[0].headers["User-Agent"].startswith("segment-lite/")


# -- responses cut off, and failures described by their cause ---------------------------


@pytest.mark.parametrize("kind", TRANSPORTS)
@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\n",  # cut off after the status line
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n",  # inside the headers
        b"HTTP/1.1 200 OK\r\n\r\n",  # no length, no body
        b'HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n{"succ',  # inside the body
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",  # inside a chunk
    ],
    ids=["status-line", "headers", "no-length-no-body", "body", "chunk"],
)
def test_a_response_cut_off_is_not_an_answer(kind, answer) -> None:
    server = CannedServer(answer)
    try:
        with pytest.raises(TransportError) as cut:
            post(kind(), server.url + "/v1/batch")
        assert isinstance(cut.value, ConnectionClosed), "counts as a connection closed without an answer"
        assert f"127.0.0.1:{server.port}" in str(cut.value)
    finally:
        server.stop()


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_a_complete_response_delimited_by_close_is_an_answer(kind) -> None:
    server = CannedServer(b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"success":true}')
    try:
        response = kind().post(server.url + "/v1/batch", BODY, HEADERS, 5)
        assert (response.status, response.body) == (200, b'{"success":true}')
    finally:
        server.stop()


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_failures_name_their_cause_and_the_server(collector, kind) -> None:
    port = collector.port
    collector.go_down()
    with pytest.raises(TransportError, match=rf"^connection refused to 127\.0\.0\.1:{port}$"):
        post(kind(), collector.url + "/v1/batch")
    closing = CannedServer(b"")
    try:
        with pytest.raises(TransportError, match="closed the connection without a") as closed:
            post(kind(), closing.url + "/v1/batch")
        assert isinstance(closed.value, ConnectionClosed) and not isinstance(closed.value, StaleConnection)
    finally:
        closing.stop()


def test_a_name_that_does_not_resolve_is_named() -> None:
    error = requests.exceptions.ConnectionError(socket.gaierror(-2, "Name or service not known"))
    cause = str(_failure(error, "https://no-such-host.invalid/v1/batch", 15, reused=False))
    assert cause.startswith("cannot resolve host no-such-host.invalid (")
