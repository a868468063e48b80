"""Fault injection: injected statuses, delays, connection resets, refusal and idle connection closing."""

from __future__ import annotations

import http.client
import json
import socket
import time
from datetime import datetime, timezone

import pytest
import requests
from collector_helpers import post, track, wait_until

from segment_lite.collector import Collector, Faults

JSON = {"Content-Type": "application/json"}


def raw_request(port: int, body: bytes) -> socket.socket:
    """Open a connection and send one complete POST /v1/batch; returns the socket."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    head = (
        f"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock.sendall(head + body)
    return sock


# -- injected statuses ------------------------------------------------------------


def test_fail_next_answers_the_status_without_retry_after_and_stores_nothing(collector: Collector) -> None:
    collector.fail_next(1)
    r = post(collector, "/v1/batch", {"batch": [track(1)]})
    assert r.status_code == 503
    assert "Retry-After" not in r.headers
    assert r.json()["success"] is False
    assert r.json()["code"] == "injected_fault"
    assert collector.messages() == []
    # Only one request was failed: the retry goes through.
    assert post(collector, "/v1/batch", {"batch": [track(1)]}).status_code == 200
    assert collector.message_ids() == {"msg-1"}
    first, second = collector.requests
    assert (first.status, first.fault) == (503, "fail")
    assert first.json == {"batch": [track(1)]}  # the faulted request is still recorded in full
    assert (second.status, second.fault) == (200, None)


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [
        (7, "7"),
        (2.5, "2.5"),
        ("Wed, 21 Oct 2015 07:28:00 GMT", "Wed, 21 Oct 2015 07:28:00 GMT"),
        (datetime(2015, 10, 21, 7, 28, tzinfo=timezone.utc), "Wed, 21 Oct 2015 07:28:00 GMT"),
    ],
)
def test_fail_next_sends_retry_after(collector: Collector, retry_after: object, header: str) -> None:
    collector.fail_next(1, status=429, retry_after=retry_after)  # type: ignore[arg-type]
    r = post(collector, "/v1/batch", {"batch": [track(1)]})
    assert r.status_code == 429
    assert r.headers["Retry-After"] == header


def test_fail_next_counts_and_custom_bodies(collector: Collector) -> None:
    collector.fail_next(2, status=500, body={"oops": True})
    collector.fail_next(1, status=502, body="bad gateway")
    statuses = [post(collector, "/v1/track", track(n)) for n in range(4)]
    assert [r.status_code for r in statuses] == [500, 500, 502, 200]
    assert statuses[0].json() == {"oops": True}
    assert statuses[2].text == "bad gateway"
    assert collector.message_ids() == {"msg-3"}
    assert collector.stats.responses == {500: 2, 502: 1, 200: 1}


def test_faults_do_not_touch_the_debugger_api(collector: Collector) -> None:
    collector.fail_next(1)
    assert requests.get(collector.url + "/api/events", timeout=5).status_code == 200
    assert post(collector, "/v1/track", track(1)).status_code == 503


def test_constructor_fail_options() -> None:
    with Collector(faults=Faults(fail_count=1, fail_status=500, retry_after=2)) as c:
        first = post(c, "/v1/track", track(1))
        assert (first.status_code, first.headers["Retry-After"]) == (500, "2")
        assert post(c, "/v1/track", track(1)).status_code == 200
    with Collector(faults=Faults(fail_rate=1.0, fail_status=429)) as c:
        assert [post(c, "/v1/track", track(n)).status_code for n in range(3)] == [429, 429, 429]
        assert c.messages() == []
        c.clear_faults()
        assert post(c, "/v1/track", track(9)).status_code == 200


def test_fail_rate_is_repeatable_with_a_seed() -> None:
    def run() -> list[int]:
        with Collector(faults=Faults(fail_rate=0.5, seed=1234)) as c:
            return [post(c, "/v1/track", track(n)).status_code for n in range(12)]

    first = run()
    assert first == run()
    assert set(first) == {200, 503}


# -- delays --------------------------------------------------------------------------


def test_delay_next_delays_the_answer_then_stores(collector: Collector) -> None:
    collector.delay_next(1, 0.3)
    started = time.monotonic()
    r = post(collector, "/v1/batch", {"batch": [track(1)]})
    assert time.monotonic() - started >= 0.3
    assert r.status_code == 200
    assert collector.message_ids() == {"msg-1"}
    assert collector.requests[0].fault == "delay"
    post(collector, "/v1/batch", {"batch": [track(2)]})
    assert collector.requests[1].fault is None  # only one request was delayed


def test_abandoned_delayed_request_is_not_stored_and_its_retry_is(collector: Collector) -> None:
    collector.delay_next(1, 1.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        post(collector, "/v1/batch", {"batch": [track(1)]}, timeout=0.2)
    assert collector.wait_for_requests(1, timeout=10)
    (abandoned,) = collector.requests
    assert abandoned.status == 499
    assert collector.messages() == []
    assert collector.stats.abandoned == 1
    # The client's retry of the same batch is stored once.
    assert post(collector, "/v1/batch", {"batch": [track(1)]}).status_code == 200
    assert collector.message_ids() == {"msg-1"}
    assert collector.stats.duplicates == 0


def test_delayed_failure_combines_both_faults(collector: Collector) -> None:
    collector.fail_next(1, status=503)
    collector.delay_next(1, 0.2)
    started = time.monotonic()
    r = post(collector, "/v1/track", track(1))
    assert time.monotonic() - started >= 0.2
    assert r.status_code == 503
    assert collector.requests[0].fault == "fail+delay"


def test_constructor_delay_applies_to_the_first_n_or_all() -> None:
    with Collector(faults=Faults(delay_s=0.2, delay_count=1)) as c:
        post(c, "/v1/track", track(1))
        post(c, "/v1/track", track(2))
        assert [r.fault for r in c.requests] == ["delay", None]
    with Collector(faults=Faults(delay_s=0.1)) as c:
        post(c, "/v1/track", track(1))
        post(c, "/v1/track", track(2))
        assert [r.fault for r in c.requests] == ["delay", "delay"]


# -- resets ------------------------------------------------------------------------------


def test_reset_next_reads_the_request_then_resets_the_connection(collector: Collector) -> None:
    collector.reset_next(1)
    body = json.dumps({"batch": [track(1)]}).encode()
    sock = raw_request(collector.port, body)
    try:
        with pytest.raises(ConnectionResetError):
            # A reset (RST), not an orderly close: recv fails instead of returning b"".
            while sock.recv(4096):
                pass
    finally:
        sock.close()
    assert collector.wait_for_requests(1, timeout=5)
    (request,) = collector.requests
    assert request.status is None
    assert request.fault == "reset"
    assert request.raw_body == body  # the whole request was read first
    assert collector.messages() == []
    assert collector.stats.resets == 1


def test_reset_next_is_a_connection_error_for_requests_and_then_recovers(collector: Collector) -> None:
    collector.reset_next(2)
    for n in range(2):
        with pytest.raises(requests.exceptions.ConnectionError):
            post(collector, "/v1/track", track(n))
    assert post(collector, "/v1/track", track(5)).status_code == 200
    assert collector.message_ids() == {"msg-5"}
    with Collector(faults=Faults(reset_count=1)) as c:
        with pytest.raises(requests.exceptions.ConnectionError):
            post(c, "/v1/track", track(1))
        assert post(c, "/v1/track", track(1)).status_code == 200


def test_reset_when_resets_every_request_holding_the_marker(collector: Collector) -> None:
    collector.reset_when("poison-pill")
    for _ in range(2):
        with pytest.raises(requests.exceptions.ConnectionError):
            post(collector, "/v1/batch", {"batch": [track(1), track(2, properties={"x": "poison-pill"})]})
    assert post(collector, "/v1/batch", {"batch": [track(1), track(3)]}).status_code == 200
    with pytest.raises(requests.exceptions.ConnectionError):  # the decoded body is searched
        post(collector, "/v1/batch", {"batch": [track(4, event="poison-pill")]}, gzipped=True)
    assert collector.message_ids() == {"msg-1", "msg-3"}
    assert [r.fault for r in collector.requests] == ["reset", "reset", None, "reset"]
    collector.clear_faults()
    assert (
        post(collector, "/v1/batch", {"batch": [track(2, properties={"x": "poison-pill"})]}).status_code
        == 200
    )


# -- refusing connections -----------------------------------------------------------------


def test_go_down_refuses_connections_and_go_up_listens_on_the_same_port(collector: Collector) -> None:
    port = collector.port
    collector.go_down()
    assert collector.is_up is False
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    with pytest.raises(requests.exceptions.ConnectionError):
        post(collector, "/v1/track", track(1))
    collector.go_up()
    assert collector.port == port
    assert post(collector, "/v1/track", track(1)).status_code == 200
    assert collector.message_ids() == {"msg-1"}


def test_refuse_for_comes_back_by_itself(collector: Collector) -> None:
    port = collector.port
    collector.refuse_for(0.3)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert collector.wait_until_up(timeout=10)
    assert collector.port == port
    assert post(collector, "/v1/track", track(1)).status_code == 200


def test_go_down_drops_kept_alive_connections(collector: Collector) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", collector.port, timeout=5)
    try:
        conn.request("POST", "/v1/track", body=json.dumps(track(1)), headers=JSON)
        conn.getresponse().read()
        collector.go_down()
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            conn.request("POST", "/v1/track", body=json.dumps(track(2)), headers=JSON)
            conn.getresponse().read()
    finally:
        conn.close()
    assert collector.message_ids() == {"msg-1"}


# -- idle connections ----------------------------------------------------------------------


def test_close_idle_connections_breaks_a_pooled_connection(collector: Collector) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", collector.port, timeout=5)
    try:
        conn.request("POST", "/v1/track", body=json.dumps(track(1)), headers=JSON)
        assert conn.getresponse().read() == b'{"success":true}'
        assert collector.close_idle_connections() == 1
        # The client still thinks the connection is open; using it fails.
        with pytest.raises(ConnectionError):
            conn.request("POST", "/v1/track", body=json.dumps(track(2)), headers=JSON)
            conn.getresponse().read()
    finally:
        conn.close()
    assert collector.message_ids() == {"msg-1"}


def test_a_session_reconnects_after_idle_connections_are_closed(collector: Collector) -> None:
    with requests.Session() as session:
        url = collector.url + "/v1/track"
        assert session.post(url, json=track(1), timeout=5).status_code == 200
        assert collector.stats.connections == 1
        assert collector.close_idle_connections() == 1
        assert session.post(url, json=track(2), timeout=5).status_code == 200
    assert collector.stats.connections == 2
    assert collector.message_ids() == {"msg-1", "msg-2"}


def test_close_idle_connections_spares_a_busy_connection(collector: Collector) -> None:
    collector.delay_next(1, 0.5)
    sock = raw_request(collector.port, json.dumps({"batch": [track(1)]}).encode())
    try:
        # Wait until the server has parsed the request line (the connection is busy).
        assert wait_until(lambda: collector._tracker.busy_count > 0, timeout=5)
        assert collector.close_idle_connections() == 0
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200")
    finally:
        sock.close()


def test_an_injected_204_has_no_body_and_the_connection_stays_in_step(collector: Collector) -> None:
    collector.fail_next(1, status=204)
    body = json.dumps({"batch": [track(1)]}).encode()
    head = "POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
    first = (head % len(body)).encode() + b"\r\n" + body
    last = (head % len(body)).encode() + b"Connection: close\r\n\r\n" + body
    with socket.create_connection(("127.0.0.1", collector.port), timeout=5) as sock:
        sock.sendall(first + last)
        received = b""
        while chunk := sock.recv(65536):  # until the server closes, as the last request asked
            received += chunk
    no_content, _, rest = received.partition(b"\r\n\r\n")
    assert no_content.startswith(b"HTTP/1.1 204 ") and b"content-length" not in no_content.lower()
    # A body after a 204 would be read as the start of the next answer.
    assert rest.startswith(b"HTTP/1.1 200 "), rest[:80]
    assert collector.message_ids() == {"msg-1"}
    with pytest.raises(ValueError, match="200 to 599"):
        collector.fail_next(1, status=100)
