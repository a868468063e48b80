"""The collector's Tracking API: endpoints, auth, encoding, limits, semantics and the test-facing API."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import threading
import zlib
from datetime import datetime, timezone
from typing import Any

import pytest
import requests
from collector_helpers import post, track

from segment_lite.collector import Auth, Collector, CollectorLimits, Credentials, Headers, RequestError

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
FIXED_NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


def fixed_clock() -> datetime:
    return FIXED_NOW


# -- endpoints ------------------------------------------------------------------


def test_batch_stores_every_message_and_answers_success(collector: Collector) -> None:
    r = post(collector, "/v1/batch", {"batch": [track(1), track(2)]})
    assert r.status_code == 200
    assert r.json() == {"success": True}
    stored = collector.messages()
    assert [m["messageId"] for m in stored] == ["msg-1", "msg-2"]
    assert stored[0]["properties"] == {"n": 1}
    assert collector.message_ids() == {"msg-1", "msg-2"}


def test_import_endpoint_behaves_like_batch(collector: Collector) -> None:
    r = post(collector, "/v1/import", {"batch": [track(7)]})
    assert r.status_code == 200
    assert collector.message_ids() == {"msg-7"}


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("identify", {"userId": "u1", "traits": {"email": "a@example.com"}}),
        ("track", {"userId": "u1", "event": "Signed Up"}),
        ("page", {"anonymousId": "a1", "name": "Home"}),
        ("screen", {"userId": "u1", "name": "Settings"}),
        ("group", {"userId": "u1", "groupId": "g1"}),
        ("alias", {"userId": "u1", "previousId": "a1"}),
    ],
)
def test_single_call_endpoints_store_one_message_typed_by_path(
    collector: Collector, kind: str, body: dict[str, Any]
) -> None:
    # A wrong ``type`` in the body is overridden by the path.
    r = post(collector, f"/v1/{kind}", {**body, "type": "bogus", "messageId": f"single-{kind}"})
    assert r.status_code == 200, r.text
    (message,) = collector.messages()
    assert message["type"] == kind
    assert message["messageId"] == f"single-{kind}"


def test_unknown_path_is_404_and_get_on_an_endpoint_is_405(collector: Collector) -> None:
    r = post(collector, "/v1/nope", {"batch": []})
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"
    r = requests.get(collector.url + "/v1/batch", timeout=5)
    assert r.status_code == 405
    assert [req.status for req in collector.requests] == [404, 405]


def test_keep_alive_serves_several_requests_on_one_connection(collector: Collector) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", collector.port, timeout=5)
    try:
        for n in range(3):
            conn.request(
                "POST", "/v1/track", body=json.dumps(track(n)), headers={"Content-Type": "application/json"}
            )
            response = conn.getresponse()
            assert response.status == 200
            response.read()
    finally:
        conn.close()
    assert collector.stats.connections == 1
    assert len(collector.message_ids()) == 3


def test_chunked_request_body_is_accepted(collector: Collector) -> None:
    body = json.dumps({"batch": [track(1)]}).encode()
    chunks = iter([body[:10], body[10:]])
    r = requests.post(
        collector.url + "/v1/batch", data=chunks, headers={"Content-Type": "application/json"}, timeout=5
    )
    assert r.status_code == 200, r.text
    assert collector.message_ids() == {"msg-1"}


# -- write keys -------------------------------------------------------------------


def test_without_configured_keys_any_key_or_none_is_accepted(collector: Collector) -> None:
    assert post(collector, "/v1/track", track(1), key="whatever").status_code == 200
    assert post(collector, "/v1/track", track(2), key=None).status_code == 200
    assert (
        post(collector, "/v1/batch", {"batch": [track(3)], "writeKey": "other"}, key=None).status_code == 200
    )
    assert len(collector.message_ids()) == 3


def test_configured_keys_accept_basic_auth_or_body_key_and_refuse_others() -> None:
    with Collector(write_keys=["good-key"]) as c:
        assert post(c, "/v1/batch", {"batch": [track(1)]}, key="good-key").status_code == 200
        r = post(c, "/v1/batch", {"batch": [track(2)], "writeKey": "good-key"}, key=None)
        assert r.status_code == 200
        r = post(c, "/v1/track", {**track(3), "writeKey": "good-key"}, key=None)
        assert r.status_code == 200

        unknown = post(c, "/v1/batch", {"batch": [track(4)]}, key="bad-key")
        assert unknown.status_code == 401
        assert unknown.json()["success"] is False
        assert unknown.json()["code"] == "unauthorized"
        assert "bad-key" not in unknown.text  # the key is never echoed

        missing = post(c, "/v1/batch", {"batch": [track(5)]}, key=None)
        assert missing.status_code == 401
        assert "missing write key" in missing.json()["message"]

        wrong_body_key = post(c, "/v1/batch", {"batch": [track(6)], "writeKey": "bad"}, key=None)
        assert wrong_body_key.status_code == 401

        not_basic = requests.post(
            c.url + "/v1/track", json=track(7), headers={"Authorization": "Bearer good-key"}, timeout=5
        )
        assert not_basic.status_code == 401

        assert c.message_ids() == {"msg-1", "msg-2", "msg-3"}
        # The write key is not stored with the message.
        assert all("writeKey" not in m for m in c.messages())
        assert c.stats.responses[401] == 4


# -- encoding -----------------------------------------------------------------------


def test_gzip_body_is_decompressed_and_recorded(collector: Collector) -> None:
    payload = {"batch": [track(1), track(2)]}
    r = post(collector, "/v1/batch", payload, gzipped=True)
    assert r.status_code == 200
    assert collector.message_ids() == {"msg-1", "msg-2"}
    (request,) = collector.requests
    assert request.raw_body[:2] == b"\x1f\x8b"  # as received: gzip
    assert request.body is not None and json.loads(request.body) == payload
    assert request.json == payload
    assert request.headers["content-encoding"] == "gzip"


def _gzip_bomb(megabytes: int) -> bytes:
    """A small gzip stream that inflates to ``megabytes`` MiB of JSON-ish padding."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b" " * (1024 * 1024)
    parts = [packer.compress(b'{"batch": [')]
    parts += [packer.compress(chunk) for _ in range(megabytes)]
    parts.append(packer.compress(b"]}"))
    parts.append(packer.flush())
    return b"".join(parts)


def test_gzip_bomb_is_refused_with_413_without_inflating_it(collector: Collector) -> None:
    bomb = _gzip_bomb(64)
    assert len(bomb) < 512_000  # small on the wire: only its inflated size is over the limit
    r = requests.post(
        collector.url + "/v1/batch",
        data=bomb,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 413
    body = r.json()
    assert body["code"] == "batch_too_large"
    assert "decompressed" in body["message"]
    assert body["limit"] == 512_000
    # Inflation stopped just past the limit instead of producing 64 MiB.
    (request,) = collector.requests
    assert request.body is None
    assert collector.messages() == []


def test_corrupt_gzip_is_400_and_unknown_encoding_is_415(collector: Collector) -> None:
    r = post(
        collector,
        "/v1/batch",
        b"\x1f\x8bnot really gzip",
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_gzip"
    r = post(collector, "/v1/batch", b"{}", headers={"Content-Encoding": "br"})
    assert r.status_code == 415
    assert r.json()["code"] == "unsupported_encoding"


# -- limits and validation -----------------------------------------------------------


def _padded(n: int, size: int) -> dict[str, Any]:
    """A track message whose compact JSON encoding is exactly ``size`` bytes."""
    message = track(n, properties={"pad": ""})
    base = len(json.dumps(message, separators=(",", ":")).encode())
    message["properties"]["pad"] = "x" * (size - base)
    assert len(json.dumps(message, separators=(",", ":")).encode()) == size
    return message


def test_message_of_exactly_32kb_is_accepted(collector: Collector) -> None:
    r = post(collector, "/v1/batch", {"batch": [_padded(1, 32768)]})
    assert r.status_code == 200, r.text
    assert collector.message_ids() == {"msg-1"}


def test_message_over_32kb_is_400_naming_index_and_size(collector: Collector) -> None:
    r = post(collector, "/v1/batch", {"batch": [track(0), _padded(1, 32769)]})
    assert r.status_code == 400
    body = r.json()
    assert body["success"] is False
    assert body["code"] == "message_too_large"
    assert body["index"] == 1
    assert body["size"] == 32769
    assert body["limit"] == 32768
    assert "batch[1]" in body["message"] and "32769" in body["message"]
    assert collector.messages() == []  # the valid message of the batch is not stored either


def test_single_call_over_32kb_is_400(collector: Collector) -> None:
    message = _padded(1, 40000)
    r = post(collector, "/v1/track", message)
    assert r.status_code == 400
    assert r.json()["code"] == "message_too_large"


def test_batch_body_over_500kb_is_413(collector: Collector) -> None:
    batch = [_padded(n, 30000) for n in range(18)]  # each message fine, the whole body too big
    data = json.dumps({"batch": batch}).encode()
    assert len(data) > 512_000
    r = post(collector, "/v1/batch", data)
    assert r.status_code == 413
    body = r.json()
    assert body["code"] == "batch_too_large"
    assert body["size"] == len(data)
    assert body["limit"] == 512_000
    assert collector.messages() == []


def test_more_than_2500_messages_is_413_and_2500_is_fine(collector: Collector) -> None:
    small = [{"type": "track", "userId": "u", "event": "e", "messageId": f"m{n}"} for n in range(2501)]
    r = post(collector, "/v1/batch", {"batch": small})
    assert r.status_code == 413
    assert r.json()["code"] == "too_many_messages"
    assert r.json()["count"] == 2501
    assert collector.messages() == []
    r = post(collector, "/v1/batch", {"batch": small[:2500]})
    assert r.status_code == 200
    assert collector.wait_for_messages(2500, timeout=1)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b"[1, 2]", "invalid_body"),
        (b'{"batch": {"a": 1}}', "invalid_batch"),
        (b'{"batch": [42]}', "invalid_message"),
        (b'{"batch": [], "context": "x"}', "invalid_batch"),
    ],
)
def test_malformed_bodies_are_400(collector: Collector, body: bytes, code: str) -> None:
    r = post(collector, "/v1/batch", body)
    assert r.status_code == 400
    assert r.json()["success"] is False
    assert r.json()["code"] == code


@pytest.mark.parametrize(
    ("message", "code", "text"),
    [
        (
            {"type": "track", "event": "E"},
            "missing_field",
            "batch[3].userId or batch[3].anonymousId is required",
        ),
        ({"type": "track", "userId": "u"}, "missing_field", "batch[3].event is required"),
        ({"type": "track", "userId": "u", "event": ""}, "missing_field", "batch[3].event is required"),
        ({"type": "identify", "userId": ""}, "missing_field", "batch[3].userId or batch[3].anonymousId"),
        ({"type": "alias", "previousId": "a"}, "missing_field", "batch[3].userId is required for alias"),
        ({"type": "alias", "userId": "u"}, "missing_field", "batch[3].previousId is required for alias"),
        ({"type": "group", "userId": "u"}, "missing_field", "batch[3].groupId is required for group"),
        ({"type": "launch", "userId": "u"}, "invalid_type", "batch[3].type must be one of"),
        ({"userId": "u"}, "invalid_type", "batch[3].type"),
        (
            {"type": "alias", "userId": "u", "previousId": "p", "messageId": {"x": 1}},
            "invalid_message_id",
            "batch[3].messageId must be a string",
        ),
        (
            {"type": "track", "userId": "u", "event": "e", "timestamp": "yesterday"},
            "invalid_timestamp",
            "batch[3]",
        ),
    ],
)
def test_invalid_message_rejects_the_whole_batch_naming_it(
    collector: Collector, message: dict[str, Any], code: str, text: str
) -> None:
    batch = [track(0), track(1), track(2), message, track(4)]
    r = post(collector, "/v1/batch", {"batch": batch})
    assert r.status_code == 400
    body = r.json()
    assert body["success"] is False
    assert body["code"] == code
    assert text in body["message"]
    assert body["index"] == 3
    assert collector.messages() == []  # all or nothing
    assert collector.stats.messages_rejected == 5


def test_anonymous_id_alone_and_numeric_ids_are_accepted(collector: Collector) -> None:
    r = post(
        collector,
        "/v1/batch",
        {
            "batch": [
                {"type": "page", "anonymousId": "anon"},
                {"type": "identify", "userId": 42, "messageId": 7},
            ]
        },
    )
    assert r.status_code == 200, r.text
    assert collector.message_ids() >= {"7"}
    assert len(collector.messages()) == 2


# -- semantics --------------------------------------------------------------------------


def test_duplicate_message_ids_are_acknowledged_but_stored_once(collector: Collector) -> None:
    assert post(collector, "/v1/batch", {"batch": [track(1), track(2)]}).status_code == 200
    assert post(collector, "/v1/batch", {"batch": [track(2), track(3), track(3)]}).status_code == 200
    assert post(collector, "/v1/track", track(1)).status_code == 200
    assert [m["messageId"] for m in collector.messages()] == ["msg-1", "msg-2", "msg-3"]
    stats = collector.stats
    assert stats.messages_received == 6
    assert stats.messages_stored == 3
    assert stats.duplicates == 3
    assert stats["duplicates"] == 3


def test_message_id_is_generated_when_missing(collector: Collector) -> None:
    message = track(1)
    del message["messageId"]
    assert post(collector, "/v1/batch", {"batch": [message, dict(message)]}).status_code == 200
    ids = collector.message_ids()
    assert len(ids) == 2
    assert all(i.startswith("collector-") for i in ids)


def test_clock_skew_correction_uses_sent_at_and_keeps_original_timestamp() -> None:
    # The client's clock is 1 hour behind; it called track 3.5 s before sending.
    with Collector(clock=fixed_clock) as c:
        message = track(1, timestamp="2024-05-01T10:59:50.000Z")
        r = post(c, "/v1/batch", {"batch": [message], "sentAt": "2024-05-01T10:59:53.500Z"})
        assert r.status_code == 200
        (stored,) = c.messages()
    assert stored["receivedAt"] == "2024-05-01T12:00:00.000Z"
    assert stored["timestamp"] == "2024-05-01T11:59:56.500Z"  # receivedAt - (sentAt - timestamp)
    assert stored["originalTimestamp"] == "2024-05-01T10:59:50.000Z"
    assert stored["sentAt"] == "2024-05-01T10:59:53.500Z"


def test_clock_skew_handles_offsets_and_message_level_sent_at() -> None:
    with Collector(clock=fixed_clock) as c:
        message = track(1, timestamp="2024-05-01T14:00:00.250+02:00", sentAt="2024-05-01T12:00:01.000Z")
        r = post(c, "/v1/batch", {"batch": [message], "sentAt": "2000-01-01T00:00:00Z"})
        assert r.status_code == 200
        (stored,) = c.messages()
    # 12:00:00.250Z called, 12:00:01.000Z sent: 0.75 s before receipt.
    assert stored["timestamp"] == "2024-05-01T11:59:59.250Z"
    assert stored["originalTimestamp"] == "2024-05-01T14:00:00.250+02:00"
    assert stored["sentAt"] == "2024-05-01T12:00:01.000Z"


def test_without_sent_at_timestamp_is_the_clients_and_without_any_it_is_received_at() -> None:
    with Collector(clock=fixed_clock) as c:
        with_ts = track(1, timestamp="2024-04-30T08:00:00+01:00")
        without = track(2)
        assert post(c, "/v1/batch", {"batch": [with_ts, without]}).status_code == 200
        first, second = c.messages()
    assert first["timestamp"] == "2024-04-30T07:00:00.000Z"
    assert first["originalTimestamp"] == "2024-04-30T08:00:00+01:00"
    assert first["receivedAt"] == "2024-05-01T12:00:00.000Z"
    assert second["timestamp"] == "2024-05-01T12:00:00.000Z"
    assert "originalTimestamp" not in second


def test_received_at_is_iso_utc_with_milliseconds(collector: Collector) -> None:
    post(collector, "/v1/track", track(1))
    (stored,) = collector.messages()
    assert ISO_MS.match(stored["receivedAt"])
    assert ISO_MS.match(stored["timestamp"])


def test_batch_context_and_integrations_merge_into_messages_message_level_winning(
    collector: Collector,
) -> None:
    batch = {
        "batch": [
            track(
                1, context={"ip": "10.0.0.1", "library": {"version": "2"}}, integrations={"Amplitude": False}
            ),
            track(2),
        ],
        "context": {"ip": "192.0.2.1", "library": {"name": "lib", "version": "1"}, "locale": "fr"},
        "integrations": {"All": True, "Amplitude": True},
    }
    assert post(collector, "/v1/batch", batch).status_code == 200
    first, second = collector.messages()
    assert first["context"] == {"ip": "10.0.0.1", "library": {"name": "lib", "version": "2"}, "locale": "fr"}
    assert first["integrations"] == {"All": True, "Amplitude": False}
    assert second["context"] == {
        "ip": "192.0.2.1",
        "library": {"name": "lib", "version": "1"},
        "locale": "fr",
    }
    assert second["integrations"] == {"All": True, "Amplitude": True}


# -- the test-facing API -------------------------------------------------------------------


def test_recorded_requests_keep_what_was_sent_and_answered(collector: Collector) -> None:
    payload = {"batch": [track(1)]}
    post(collector, "/v1/batch", payload, headers={"X-Custom-Header": "yes"})
    post(collector, "/v1/batch", b"nope")
    ok, bad = collector.requests
    assert ok.method == "POST"
    assert ok.path == "/v1/batch"
    assert ok.status == 200
    assert ok.json == payload
    assert ok.raw_body == ok.body == json.dumps(payload).encode()
    assert json.loads(ok.response_body) == {"success": True}
    assert isinstance(ok.headers, Headers)
    assert ok.headers["x-custom-header"] == "yes"
    assert "X-Custom-Header" in list(ok.headers)  # original case kept when iterating
    assert ok.headers["Authorization"].startswith("Basic ")
    assert bad.status == 400
    assert bad.json is None
    assert bad.raw_body == b"nope"
    # Printing a request (e.g. in a failing assertion) never shows the write key.
    assert repr(ok) == f"RecordedRequest(POST /v1/batch -> 200, 1 message(s), {len(ok.raw_body)} bytes)"
    assert "<redacted>" in repr(ok.headers)
    assert "dGVzdC1rZXk6" not in repr(ok.headers)  # base64 of "test-key:"


def test_stats_count_requests_messages_and_statuses(collector: Collector) -> None:
    post(collector, "/v1/batch", {"batch": [track(1), track(2)]})
    post(collector, "/v1/batch", {"batch": [track(2)]})
    post(collector, "/v1/batch", b"{")
    stats = collector.stats
    assert stats.requests == 3
    assert stats.messages_received == 3
    assert stats.messages_stored == 2
    assert stats.duplicates == 1
    assert stats.responses == {200: 2, 400: 1}
    assert stats.as_dict()["responses"] == {"200": 2, "400": 1}


def test_wait_for_messages_and_requests_wake_when_reached(collector: Collector) -> None:
    assert collector.wait_for_messages(1, timeout=0.01) is False
    assert collector.wait_for_requests(1, timeout=0.01) is False
    sender = threading.Thread(target=post, args=(collector, "/v1/batch", {"batch": [track(1), track(2)]}))
    sender.start()
    try:
        assert collector.wait_for_messages(2, timeout=10) is True
        assert collector.wait_for_requests(1, timeout=10) is True
    finally:
        sender.join()
    assert collector.wait_for_messages(3, timeout=0.01) is False


def test_reset_clears_messages_requests_and_counters(collector: Collector) -> None:
    post(collector, "/v1/batch", {"batch": [track(1)]})
    collector.fail_next(5)
    collector.reset()
    assert collector.messages() == []
    assert collector.requests == []
    assert collector.stats.requests == 0
    assert collector.stats.messages_stored == 0
    # Pending faults are dropped too, and the same messageId is new again.
    assert post(collector, "/v1/batch", {"batch": [track(1)]}).status_code == 200
    assert collector.message_ids() == {"msg-1"}


def test_messages_stay_readable_after_stop_and_temporary_db_is_deleted() -> None:
    with Collector() as c:
        post(c, "/v1/batch", {"batch": [track(1)]})
        path = c.store.path
        assert os.path.exists(path)
    assert not os.path.exists(path)
    assert c.message_ids() == {"msg-1"}
    assert c.messages()[0]["event"] == "Item Viewed"


def test_persistent_db_survives_restart(tmp_path: Any) -> None:
    db = str(tmp_path / "events.db")
    with Collector(db=db) as c:
        assert post(c, "/v1/batch", {"batch": [track(1)]}).status_code == 200
    assert os.path.exists(db)
    with Collector(db=db) as c:
        assert c.message_ids() == {"msg-1"}
        assert c.wait_for_messages(1, timeout=0.01)
        assert post(c, "/v1/track", track(1)).status_code == 200
        assert c.stats.duplicates == 1


def test_gzip_roundtrip_through_http_client_with_content_length(collector: Collector) -> None:
    body = gzip.compress(json.dumps({"batch": [track(5)]}).encode())
    conn = http.client.HTTPConnection("127.0.0.1", collector.port, timeout=5)
    try:
        conn.request(
            "POST",
            "/v1/batch",
            body=body,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        assert response.status == 200
        assert json.loads(response.read()) == {"success": True}
        assert response.getheader("Content-Length") is not None
    finally:
        conn.close()
    assert collector.message_ids() == {"msg-5"}


def test_keep_requests_bounds_the_recorded_requests() -> None:
    with Collector(limits=CollectorLimits(keep_requests=2)) as c:
        for n in range(4):
            post(c, "/v1/track", track(n))
        assert [r.json["messageId"] for r in c.requests] == ["msg-2", "msg-3"]
        assert c.wait_for_requests(4, timeout=0.01)
        assert c.stats.requests == 4


def test_debugger_routes_refuse_a_foreign_host_header(collector: Collector) -> None:
    # A page on another site that rebinds its name to 127.0.0.1 must not read events.
    post(collector, "/v1/track", track(1))
    foreign = requests.get(collector.url + "/api/events", headers={"Host": "evil.example:8787"}, timeout=5)
    assert foreign.status_code == 403
    assert "msg-1" not in foreign.text
    assert requests.get(collector.url + "/", headers={"Host": "attacker.test"}, timeout=5).status_code == 403
    for host in (f"localhost:{collector.port}", f"127.0.0.1:{collector.port}", "[::1]:80"):
        ok = requests.get(collector.url + "/api/events", headers={"Host": host}, timeout=5)
        assert ok.status_code == 200, host
        assert [e["messageId"] for e in ok.json()["events"]] == ["msg-1"]
    # The Tracking API itself does not care about Host.
    r = post(collector, "/v1/track", track(2), headers={"Host": "api.segment.io"})
    assert r.status_code == 200


def test_debugger_api_returns_events_details_and_stats(collector: Collector) -> None:
    post(collector, "/v1/batch", {"batch": [track(1), track(2, type="page", name="Home")]})
    listing = requests.get(collector.url + "/api/events", timeout=5).json()
    assert [e["messageId"] for e in listing["events"]] == ["msg-2", "msg-1"]
    assert listing["total"] == 2
    last = listing["lastId"]
    assert requests.get(collector.url + f"/api/events?after={last}", timeout=5).json()["events"] == []
    post(collector, "/v1/track", track(3))
    newer = requests.get(collector.url + f"/api/events?after={last}", timeout=5).json()
    assert [e["messageId"] for e in newer["events"]] == ["msg-3"]
    only_pages = requests.get(collector.url + "/api/events?type=page", timeout=5).json()
    assert [e["name"] for e in only_pages["events"]] == ["Home"]
    detail = requests.get(collector.url + "/api/events/msg-1", timeout=5).json()
    assert detail["message"]["properties"] == {"n": 1}
    assert requests.get(collector.url + "/api/events/nope", timeout=5).status_code == 404
    stats = requests.get(collector.url + "/api/stats", timeout=5).json()
    assert stats["messages_stored"] == 3
    assert stats["stored_total"] == 3
    page = requests.get(collector.url + "/", timeout=5)
    assert page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    for asset in ("app.js", "app.css"):
        assert requests.get(collector.url + "/static/" + asset, timeout=5).status_code == 200
    assert requests.get(collector.url + "/static/../server.py", timeout=5).status_code == 404
    assert requests.get(collector.url + "/static/server.py", timeout=5).status_code == 404
    assert collector.stats.requests == 2  # debugger traffic is not counted


# -- the seams: credential check and annotators ----------------------------------------------


def test_annotators_see_each_message_and_may_change_or_refuse_the_request() -> None:
    seen: list[tuple[str, int]] = []

    def no_test_events(message: dict[str, Any], index: int) -> dict[str, Any]:
        seen.append((message["messageId"], index))
        if str(message.get("event", "")).startswith("test:"):
            raise RequestError(400, "test_event", f"batch[{index}].event is a test event", {"index": index})
        message.setdefault("context", {})["checked"] = True
        return message

    with Collector(annotators=[no_test_events]) as c:
        assert post(c, "/v1/batch", {"batch": [track(1), track(2)]}).status_code == 200
        refused = post(c, "/v1/batch", {"batch": [track(3), track(4, event="test:x")]})
        assert (refused.status_code, refused.json()["code"], refused.json()["index"]) == (
            400,
            "test_event",
            1,
        )
        assert [m["context"]["checked"] for m in c.messages()] == [True, True]
        assert c.message_ids() == {"msg-1", "msg-2"}  # the refused request stored nothing
        assert seen == [("msg-1", 0), ("msg-2", 1), ("msg-3", 0), ("msg-4", 1)]
        assert c.stats.messages_rejected == 2


def test_a_credential_check_replaces_the_write_key_check() -> None:
    def bearer(credentials: Credentials) -> None:
        if credentials.authorization != "Bearer good-token":
            raise RequestError(401, "unauthorized", "a valid bearer token is required")

    with Collector(auth=Auth(credential_check=bearer)) as c:
        ok = requests.post(
            c.url + "/v1/track", json=track(1), headers={"Authorization": "Bearer good-token"}, timeout=5
        )
        assert ok.status_code == 200
        assert post(c, "/v1/track", track(2), key="any-write-key").status_code == 401
        # With a check configured, a browser on another origin is left to that check.
        r = requests.post(
            c.url + "/v1/track",
            json=track(3),
            headers={"Authorization": "Bearer good-token", "Origin": "https://app.example"},
            timeout=5,
        )
        assert r.status_code == 200
        assert c.message_ids() == {"msg-1", "msg-3"}
