"""Request framing on raw sockets: ambiguous bodies are refused and close the connection (RFC 9112).

A body framed two ways (``Content-Length`` beside ``Transfer-Encoding``, or two
``Transfer-Encoding`` lines) lets a front end and the collector disagree on where a
request ends: the bytes one of them takes for body, the other reads as a second
request ("request smuggling"). Both tests here failed before the collector parsed
HTTP with h11: the second request was stored.
"""

from __future__ import annotations

import json
import re
import socket

import pytest
from collector_helpers import connect, read_answer, track

from segment_lite.collector import Collector

HEAD = "POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


def chunked(body: bytes) -> bytes:
    return f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"


def plain_request(path: str, message: dict[str, object]) -> bytes:
    body = json.dumps(message).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def answers_until_closed(sock: socket.socket) -> list[tuple[int, dict[str, str], bytes]]:
    """Every answer the server writes on ``sock`` until it closes the connection."""
    answers = []
    while True:
        try:
            answers.append(read_answer(sock))
        except (ConnectionError, socket.timeout):
            return answers


SMUGGLED = plain_request("/v1/track", track(2, messageId="smuggled"))


@pytest.mark.parametrize(
    "framing",
    [
        # Content-Length counts the chunked body and the request after it.
        ["Content-Length: {whole}", "Transfer-Encoding: chunked"],
        ["Transfer-Encoding: chunked", "Content-Length: {whole}"],
        ["Transfer-Encoding: chunked", "Transfer-Encoding: identity"],
        ["Transfer-Encoding: identity", "Transfer-Encoding: chunked"],
    ],
)
def test_a_body_framed_two_ways_is_400_and_closes_the_connection(
    collector: Collector, framing: list[str]
) -> None:
    body = chunked(json.dumps({"batch": [track(1)]}).encode())
    lines = [line.format(whole=len(body) + len(SMUGGLED)) for line in framing]
    with connect(collector) as sock:
        sock.sendall((HEAD + "".join(f"{line}\r\n" for line in lines) + "\r\n").encode() + body + SMUGGLED)
        answers = answers_until_closed(sock)
    assert len(answers) == 1, answers
    status, headers, answer = answers[0]
    assert (status, json.loads(answer)["code"]) == (400, "invalid_transfer_encoding")
    assert headers["connection"] == "close"
    assert collector.messages() == []


def test_kept_alive_pipelined_requests_are_each_answered_in_order(collector: Collector) -> None:
    last = plain_request("/v1/track", track(2)).replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
    with connect(collector) as sock:
        sock.sendall(plain_request("/v1/track", track(0)) + plain_request("/v1/track", track(1)) + last)
        received = b""
        while chunk := sock.recv(65536):  # until the server closes, as the last request asked
            received += chunk
    assert re.findall(rb"HTTP/1.1 (\d+)", received) == [b"200"] * 3
    assert collector.message_ids() == {"msg-0", "msg-1", "msg-2"}
    assert collector.stats.connections == 1


def test_expect_100_continue_is_answered_before_the_body_is_sent(collector: Collector) -> None:
    body = json.dumps(track(1)).encode()
    head = (
        "POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Expect: 100-continue\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with connect(collector) as sock:
        sock.sendall(head.encode())
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 ")
        sock.sendall(body)
        assert read_answer(sock)[0] == 200
    assert collector.message_ids() == {"msg-1"}


def test_a_request_head_over_64_kib_is_431_and_closes(collector: Collector) -> None:
    with connect(collector) as sock:
        sock.sendall(HEAD.encode() + b"X-Pad: " + b"p" * 70_000 + b"\r\n\r\n")
        status, headers, answer = read_answer(sock)
    assert (status, json.loads(answer)["code"], headers["connection"]) == (431, "head_too_large", "close")
