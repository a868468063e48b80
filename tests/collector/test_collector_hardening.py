"""Hostile input against the collector: framing, hosts and origins, JSON, queries and connection limits.

Each test here failed before the collector was hardened (issue 11): the bad
input got a dropped connection, a traceback, unbounded memory or a 200.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from collector_helpers import connect, post, read_answer, track, wait_until

from segment_lite.collector import Collector, CollectorLimits
from segment_lite.collector.debugger import CONTENT_SECURITY_POLICY
from segment_lite.collector.http_server import ConnectionLimits, LocalNames
from segment_lite.limits import MAX_NESTING_DEPTH

JSON = "application/json"


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes the connection (reads until EOF; the socket timeout bounds the wait)."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
    return True


def raw_post(collector: Collector, head_lines: list[str], body: bytes = b"") -> tuple[int, dict[str, Any]]:
    head = "\r\n".join(["POST /v1/batch HTTP/1.1", "Host: 127.0.0.1", *head_lines, "", ""])
    with connect(collector) as sock:
        sock.sendall(head.encode("utf-8") + body)
        status, _, answer = read_answer(sock)
    return status, json.loads(answer)


def chunked(*chunks: bytes, sizes: list[str] | None = None) -> bytes:
    out = b""
    for n, chunk in enumerate(chunks):
        size = sizes[n] if sizes else f"{len(chunk):x}"
        out += size.encode() + b"\r\n" + chunk + b"\r\n"
    return out + b"0\r\n\r\n"


BATCH = json.dumps({"batch": [track(1)]}).encode()
CHUNKED_HEAD = ["Content-Type: application/json", "Transfer-Encoding: chunked"]


# -- 1. body framing ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "size", ["-1", "-0x10", "0x10", "+10", "1_0", " ", "g", "1" * 17, "ffffffffffffffffff"]
)
def test_an_invalid_chunk_size_is_400_and_nothing_is_stored(collector: Collector, size: str) -> None:
    status, answer = raw_post(collector, CHUNKED_HEAD, chunked(BATCH, sizes=[size]))
    assert status == 400
    assert answer["code"] == "invalid_chunking"
    assert collector.messages() == []


def test_chunk_data_must_end_with_crlf(collector: Collector) -> None:
    body = b"5\r\n" + b'{"ba' + b'tch": []}' + b"\r\n0\r\n\r\n"  # 5 announced, 13 sent
    status, answer = raw_post(collector, CHUNKED_HEAD, body)
    assert (status, answer["code"]) == (400, "invalid_chunking")


@pytest.mark.parametrize("length", ["-1", "+5", "1_0", "5, 5", "0x10", "\uff15"])
def test_an_invalid_content_length_is_400(collector: Collector, length: str) -> None:
    status, answer = raw_post(collector, ["Content-Type: application/json", f"Content-Length: {length}"])
    assert (status, answer["code"]) == (400, "invalid_length")


def test_a_chunked_body_over_the_read_limit_is_refused_without_reading_it() -> None:
    limits = ConnectionLimits(max_body_bytes=100_000)
    with Collector(limits=CollectorLimits(connections=limits)) as c, connect(c) as sock:
        sock.sendall("\r\n".join(["POST /v1/batch HTTP/1.1", "Host: x", *CHUNKED_HEAD, "", ""]).encode())
        for _ in range(3):
            sock.sendall(b"c000\r\n" + b" " * 0xC000 + b"\r\n")  # 3 x 48 KiB: over 100,000 bytes
        status, headers, answer = read_answer(sock)
        assert status == 413
        assert json.loads(answer)["code"] == "body_too_large"
        assert json.loads(answer)["limit"] == 100_000
        assert headers["connection"] == "close"
        (request,) = c.requests
        assert len(request.raw_body) <= 1024


def test_a_body_over_the_read_limit_names_that_limit_not_the_batch_limit(collector: Collector) -> None:
    status, answer = raw_post(collector, ["Content-Type: application/json", f"Content-Length: {17 * 2**20}"])
    assert status == 413
    assert answer["code"] == "body_too_large"
    assert answer["limit"] == 16 * 2**20
    assert str(16 * 2**20) in answer["message"]
    assert "512000" not in answer["message"]


def test_a_chunked_batch_over_the_batch_limit_is_413_and_not_kept(collector: Collector) -> None:
    big = b" " * 2_000_000
    status, answer = raw_post(collector, CHUNKED_HEAD, chunked(big[:1_000_000], big[1_000_000:]))
    assert (status, answer["code"], answer["size"], answer["limit"]) == (
        413,
        "batch_too_large",
        2_000_000,
        512_000,
    )
    (request,) = collector.requests
    assert request.raw_body_size == 2_000_000
    assert len(request.raw_body) <= 1024 and request.truncated
    assert request.json is None


# -- 2. Host and Origin --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1.evil.example",
        "127.0.0.1.evil.example:8787",
        "localhost.evil.example",
        "evil.example",
        "[::1].evil.example",
        "0.0.0.0",
        "127.1",
        "127.0.0.1:80@evil.example",
        "127.0.0.1:port",
        "[::1",
        "::1",
        "",
    ],
)
def test_the_debugger_refuses_every_host_but_local_ones(collector: Collector, host: str) -> None:
    post(collector, "/v1/track", track(1))
    r = requests.get(collector.url + "/api/events", headers={"Host": host}, timeout=5)
    assert r.status_code == 403, host
    assert r.json()["code"] == "forbidden_host"
    assert "msg-1" not in r.text


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2:9", "127.255.255.254:80", "LOCALHOST:1", "[::1]"])
def test_the_debugger_answers_loopback_hosts(collector: Collector, host: str) -> None:
    assert requests.get(collector.url + "/api/events", headers={"Host": host}, timeout=5).status_code == 200


def test_local_names_allow_the_bound_address_and_ip_literals_on_a_wildcard_bind() -> None:
    bound = LocalNames("192.0.2.10")
    assert bound.allows_host("192.0.2.10:8787")
    assert bound.allows_host("localhost")
    assert not bound.allows_host("192.0.2.11:8787")
    wildcard = LocalNames("0.0.0.0")
    assert wildcard.allows_host("192.0.2.11:8787") and wildcard.allows_host("[2001:db8::1]:80")
    assert not wildcard.allows_host("example.com:8787")
    assert not LocalNames("127.0.0.1").allows_origin("null")
    assert LocalNames("127.0.0.1").allows_origin("http://localhost:3000")
    assert not LocalNames("127.0.0.1").allows_origin("https://127.0.0.1.evil.example")


# -- 3. JSON: non-finite numbers and nesting ------------------------------------------------------


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])
def test_non_finite_numbers_are_400_with_a_message(collector: Collector, number: str) -> None:
    body = b'{"batch": [{"type": "track", "userId": "u", "event": "e", "properties": {"x": %s}}]}'
    r = post(collector, "/v1/batch", body % number.encode())
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_json"
    assert "JSON" in r.json()["message"]
    assert collector.messages() == []


def nested(depth: int) -> dict[str, Any]:
    """A track message whose nesting depth (the message itself counting 1) is ``depth``."""
    properties: Any = 1
    for _ in range(depth - 1):
        properties = {"a": properties}
    return track(1, properties=properties)


def test_nesting_up_to_the_limit_is_stored_and_one_more_level_is_400_naming_the_path(
    collector: Collector,
) -> None:
    assert post(collector, "/v1/batch", {"batch": [nested(MAX_NESTING_DEPTH)]}).status_code == 200
    r = post(collector, "/v1/batch", {"batch": [track(2), nested(MAX_NESTING_DEPTH + 1)]})
    assert r.status_code == 400
    body = r.json()
    assert (body["code"], body["index"], body["limit"]) == ("nesting_too_deep", 1, MAX_NESTING_DEPTH)
    assert body["path"] == "batch[1].properties" + ".a" * (MAX_NESTING_DEPTH - 1)
    assert body["path"] in body["message"]
    assert collector.message_ids() == {"msg-1"}


def test_nesting_too_deep_to_parse_gets_an_answer_not_a_dropped_connection(collector: Collector) -> None:
    for depth in (985, 10_000, 100_000):
        body = b'{"batch": [' + b"[" * depth + b"]" * depth + b"]}"
        r = post(collector, "/v1/batch", body)
        assert r.status_code == 400, depth
        assert r.json()["code"] == "nesting_too_deep"
    assert post(collector, "/v1/track", track(1)).status_code == 200


def test_shared_batch_context_counts_one_level_below_the_message(collector: Collector) -> None:
    value: Any = {}
    for _ in range(MAX_NESTING_DEPTH - 1):
        value = {"a": value}
    r = post(collector, "/v1/batch", {"batch": [track(1)], "context": value})
    assert (r.status_code, r.json()["code"]) == (400, "nesting_too_deep")
    assert r.json()["path"].startswith("body.context.a")


def strict_json(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} in the answer")

    return json.loads(text, parse_constant=refuse)


def test_rows_stored_with_nan_are_served_as_valid_json(collector: Collector) -> None:
    # An older collector stored NaN; the API must still answer JSON a browser can parse.
    collector.store.insert_many(
        [{**track(1), "receivedAt": "2024-01-01T00:00:00.000Z", "properties": {"x": float("nan")}}]
    )
    listing = requests.get(collector.url + "/api/events", timeout=5)
    assert [e["messageId"] for e in strict_json(listing.text)["events"]] == ["msg-1"]
    detail = requests.get(collector.url + "/api/events/msg-1", timeout=5)
    assert strict_json(detail.text)["message"]["properties"] == {"x": None}


@pytest.mark.parametrize(
    "where",
    [
        '"properties": {"title": "cut mid-emoji \\ud83d"}',
        '"properties": {"\\udc00key": 1}',
        '"properties": {"list": [["deep \\udfff"]]}',
        '"event": "Viewed \\ud83d"',
        '"userId": "\\ud83d"',
        '"messageId": "id-\\ud83d"',
        '"context": {"page": {"title": "\\ud83d\\ud83d"}}',
    ],
)
def test_a_lone_surrogate_anywhere_is_stored_as_a_replacement_character(
    collector: Collector, where: str
) -> None:
    # What JSON.stringify writes for a string cut between the two halves of an emoji.
    message = '{"type": "track", "userId": "u", "event": "e", "messageId": "m", ' + where + "}"
    r = post(collector, "/v1/batch", ('{"batch": [' + message + "]}").encode())
    assert r.status_code == 200, r.text
    (stored,) = collector.messages()
    text = json.dumps(stored, ensure_ascii=False)
    assert "\ufffd" in text and not re.search("[\ud800-\udfff]", text)
    listing = requests.get(collector.url + "/api/events", timeout=5)
    assert listing.status_code == 200 and listing.json()["total"] == 1
    detail = requests.get(collector.url + "/api/events/" + quote(stored["messageId"]), timeout=5)
    assert detail.json()["message"] == stored


def test_a_lone_surrogate_in_a_single_call_and_in_shared_batch_context_is_stored(
    collector: Collector,
) -> None:
    assert (
        post(
            collector,
            "/v1/track",
            b'{"userId": "u", "event": "\\ud83d", "messageId": "a", "properties": {"ok": "\\ud83d\\ude00"}}',
        ).status_code
        == 200
    )
    body = b'{"batch": [{"type": "track", "userId": "u", "event": "e", "messageId": "b"}], "context": {"x": "\\udbff"}}'
    assert post(collector, "/v1/batch", body).status_code == 200
    assert [m["event"] for m in collector.messages()] == ["\ufffd", "e"]
    assert collector.messages()[1]["context"] == {"x": "\ufffd"}
    assert collector.messages()[0]["properties"] == {"ok": "\U0001f600"}  # a whole pair is kept


def test_a_failing_annotator_gets_a_500_without_the_exception_text() -> None:
    def broken(message: dict[str, Any], index: int) -> dict[str, Any]:
        raise KeyError("/home/dev/secret-path")

    with Collector(annotators=[broken]) as c:
        r = post(c, "/v1/batch", BATCH)
        assert (r.status_code, r.json()["code"]) == (500, "internal_error")
        assert "secret-path" not in r.text and "KeyError" not in r.text
        assert c.messages() == []


# -- 4. query parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "after=99999999999999999999999999",
        "after=-1",
        "after=abc",
        "after=1e3",
        "before=18446744073709551616",
        "limit=0",
        "limit=1001",
        "limit=%EF%BC%95",
        "type=launch",
    ],
)
def test_invalid_query_parameters_are_400_naming_them(collector: Collector, query: str) -> None:
    r = requests.get(collector.url + "/api/events?" + query, timeout=5)
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_query"
    assert r.json()["field"] == query.split("=")[0]
    assert requests.get(collector.url + "/api/events?limit=1000&after=0", timeout=5).status_code == 200


# -- 5. connection handling -------------------------------------------------------------------------


def test_a_request_that_arrives_too_slowly_is_answered_408() -> None:
    with Collector(limits=CollectorLimits(connections=ConnectionLimits(read_timeout_s=0.3))) as c:
        with connect(c) as sock:
            sock.sendall(b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Le")  # and never more
            status, headers, body = read_answer(sock)
            assert (status, json.loads(body)["code"], headers["connection"]) == (
                408,
                "request_timeout",
                "close",
            )
            assert closed_by_server(sock)
        with connect(c) as sock:
            sock.sendall(b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
            sock.sendall(b"Content-Length: 100\r\n\r\n{")  # a body that never completes
            status, _, body = read_answer(sock)
            assert (status, json.loads(body)["code"]) == (408, "request_timeout")
        assert c.requests[-1].status == 408
        assert c.open_connections == 0 or wait_until(lambda: c.open_connections == 0)


def test_an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() -> None:
    with Collector(limits=CollectorLimits(connections=ConnectionLimits(idle_timeout_s=0.3))) as c:
        with connect(c) as silent:
            assert closed_by_server(silent)  # connected, never sent a byte
        with connect(c) as sock:
            body = json.dumps(track(1)).encode()
            sock.sendall(
                b"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            assert read_answer(sock)[0] == 200
            assert closed_by_server(sock)
        assert wait_until(lambda: c.open_connections == 0)


@pytest.fixture
def small_collector() -> Iterator[Collector]:
    with Collector(
        limits=CollectorLimits(connections=ConnectionLimits(max_connections=4, read_timeout_s=30))
    ) as c:
        yield c


def test_when_every_handler_thread_is_busy_a_new_connection_gets_503(small_collector: Collector) -> None:
    c = small_collector
    busy = [connect(c) for _ in range(4)]
    try:
        for sock in busy:
            sock.sendall(b"POST /v1/batch HTTP/1.1\r\n")  # a request in progress
        assert wait_until(lambda: c._tracker.busy_count == 4)
        with connect(c) as extra:
            status, headers, body = read_answer(extra)
        assert (status, headers["retry-after"]) == (503, "1")
        assert json.loads(body)["code"] == "too_many_connections"
    finally:
        for sock in busy:
            sock.close()
    assert wait_until(lambda: c.open_connections == 0)
    assert post(c, "/v1/track", track(1)).status_code == 200


def test_when_every_handler_thread_is_taken_the_longest_idle_connection_makes_room(
    small_collector: Collector,
) -> None:
    c = small_collector
    sessions = [requests.Session() for _ in range(4)]
    try:
        for n, session in enumerate(sessions):  # four kept-alive, idle connections
            assert session.post(c.url + "/v1/track", json=track(n), timeout=5).status_code == 200
        assert c.open_connections == 4
        assert post(c, "/v1/track", track(9)).status_code == 200  # a fifth client is served
        assert len(c.message_ids()) == 5
        # The longest-idle session finds its connection closed, and reconnects.
        assert sessions[0].post(c.url + "/v1/track", json=track(10), timeout=5).status_code == 200
    finally:
        for session in sessions:
            session.close()


def test_the_listen_backlog_is_at_least_128(collector: Collector) -> None:
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is not installed")
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{collector.port}"], capture_output=True, text=True, check=True
    ).stdout
    (line,) = out.splitlines()
    assert int(line.split()[2]) >= 128  # Send-Q of a listening socket is its backlog


def test_retained_bodies_are_bounded_by_total_bytes_dropping_the_oldest() -> None:
    with Collector(limits=CollectorLimits(keep_request_bytes=1_000_000)) as c:
        batch = {"batch": [track(n, properties={"pad": "x" * 30_000}) for n in range(10)]}
        for _ in range(8):
            assert post(c, "/v1/batch", batch).status_code == 200
        kept = c.requests
        assert sum(r.retained_bytes for r in kept) <= 1_000_000
        assert 1 <= len(kept) < 8
        assert c.stats.requests == 8  # counted, even when no longer kept


def test_a_refused_body_is_kept_only_as_a_short_prefix(collector: Collector) -> None:
    big = json.dumps({"batch": [track(n, properties={"pad": "x" * 30_000}) for n in range(30)]}).encode()
    assert post(collector, "/v1/batch", big).status_code == 413
    invalid = json.dumps({"batch": [{"type": "track", "pad": "y" * 10_000}]}).encode()
    assert post(collector, "/v1/batch", invalid).status_code == 400
    for request, size in zip(collector.requests, (len(big), len(invalid))):
        assert request.raw_body_size == size
        assert len(request.raw_body) == 1024
        assert request.truncated and request.json is None


# -- 6. browser writes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None]
)
def test_writes_without_a_json_content_type_are_refused(collector: Collector, content_type: Any) -> None:
    # What a web page can send without a CORS preflight (a "no-cors" fetch or a form).
    headers = {} if content_type is None else {"Content-Type": content_type}
    r = requests.post(collector.url + "/v1/batch", data=BATCH, headers=headers, timeout=5)
    assert r.status_code == 415
    assert r.json()["code"] == "unsupported_media_type"
    assert collector.messages() == []


def test_json_content_type_with_parameters_is_accepted(collector: Collector) -> None:
    r = post(collector, "/v1/batch", BATCH, headers={"Content-Type": "Application/JSON; charset=utf-8"})
    assert r.status_code == 200


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://127.0.0.1.evil.example:8787"])
def test_writes_from_a_foreign_origin_are_refused_without_a_write_key(
    collector: Collector, origin: str
) -> None:
    r = post(collector, "/v1/batch", BATCH, headers={"Origin": origin})
    assert r.status_code == 403
    assert r.json()["code"] == "forbidden_origin"
    assert collector.messages() == []
    assert post(collector, "/v1/batch", BATCH, headers={"Origin": "http://localhost:3000"}).status_code == 200


def test_with_a_write_key_a_foreign_origin_may_write() -> None:
    with Collector(write_keys=["k"]) as c:
        assert (
            post(c, "/v1/batch", BATCH, key="k", headers={"Origin": "https://app.example"}).status_code == 200
        )
        assert (
            post(c, "/v1/batch", BATCH, key="x", headers={"Origin": "https://app.example"}).status_code == 401
        )


def test_the_debugger_may_not_be_framed(collector: Collector) -> None:
    for path in ("/", "/api/events", "/static/app.js"):
        r = requests.get(collector.url + path, timeout=5)
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"], path
        assert r.headers["X-Frame-Options"] == "DENY"
    # The policy documented is the policy sent.
    docs = (Path(__file__).resolve().parents[2] / "docs" / "collector.md").read_text(encoding="utf-8")
    sent = requests.get(collector.url + "/", timeout=5).headers["Content-Security-Policy"]
    assert sent == CONTENT_SECURITY_POLICY
    assert f"Content-Security-Policy: {sent}\n" in docs


SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
}
PATHS = [
    "/",
    "/index.html",
    "/static/app.js",
    "/static/missing.js",
    "/api/events",
    "/api/events?limit=0",
    "/api/events/nope",
    "/api/stats",
    "/api/nope",
    "/v1/batch",
    "/v1/track",
    "/v1/nope",
    "/token",
    "/elsewhere",
]


def assert_security_headers(headers: Any, what: object) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, (what, name, dict(headers))


def test_every_answer_of_every_route_and_method_carries_the_security_headers(collector: Collector) -> None:
    seen = set()
    with requests.Session() as session:
        for path in PATHS:
            for method in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"):
                for host in ("127.0.0.1", "evil.example"):
                    r = session.request(
                        method,
                        collector.url + path,
                        data=BATCH if method in ("POST", "PUT", "PATCH") else None,
                        headers={"Content-Type": JSON, "Host": host},
                        timeout=5,
                    )
                    seen.add(r.status_code)
                    assert_security_headers(r.headers, (method, path, host, r.status_code))
        collector.fail_next(1, status=429, retry_after=1)
        r = session.post(collector.url + "/v1/batch", data=BATCH, headers={"Content-Type": JSON}, timeout=5)
        assert r.status_code == 429
        assert_security_headers(r.headers, "injected fault")
        seen.add(r.status_code)
    assert {200, 400, 403, 404, 405, 429} <= seen


@pytest.mark.parametrize(
    "raw", [b"garbage\r\n\r\n", b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n"]
)
def test_answers_to_unparsable_requests_carry_the_security_headers(collector: Collector, raw: bytes) -> None:
    with connect(collector) as sock:
        sock.sendall(raw)
        status, headers, _ = read_answer(sock)
    assert status == 400
    assert_security_headers(headers, raw)


def test_timeouts_and_busy_answers_carry_the_security_headers() -> None:
    limits = ConnectionLimits(max_connections=1, read_timeout_s=0.3)
    with Collector(limits=CollectorLimits(connections=limits)) as c, connect(c) as slow:
        slow.sendall(b"POST /v1/batch HTTP/1.1\r\n")
        assert wait_until(lambda: c._tracker.busy_count == 1)
        with connect(c) as extra:
            status, headers, _ = read_answer(extra)
        assert status == 503
        assert_security_headers(headers, "busy")
        status, headers, _ = read_answer(slow)
        assert status == 408
        assert_security_headers(headers, "timeout")


# -- the collector keeps working after all of the above -------------------------------------------


def test_a_refused_request_leaves_the_connection_usable_when_the_body_was_read(collector: Collector) -> None:
    with requests.Session() as session:
        r = session.post(collector.url + "/v1/batch", data=b"{", headers={"Content-Type": JSON}, timeout=5)
        assert r.status_code == 400
        assert session.post(collector.url + "/v1/track", json=track(1), timeout=5).status_code == 200
    assert collector.stats.connections == 1
