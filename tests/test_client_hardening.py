"""Hostile and unlucky use of the client: shutdown with blocked producers, raising objects, timestamp
strings, and credentials echoed back by a server (issue 22, defects 9 to 12).

Each test checks the books: every call is either accepted (and then delivered or
counted as dropped with a reason) or refused and counted.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import http.server
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import segment_lite
from segment_lite import EncodeError, ValidationError, encoding
from segment_lite.encoding import HAVE_ORJSON
from segment_lite.ledger import Credentials
from segment_lite.limits import MAX_NESTING_DEPTH
from segment_lite.testing import FakeClock, RecordingClient
from tests.conftest import WRITE_KEY
from tests.transport_servers import SilentServer

ACCEPTED_DROPS = ("rejected", "retries_exhausted", "shutdown_timeout")
#: An upload interval no test outlives: what is tracked goes out when a batch fills or at flush().
ONLY_FLUSH_SENDS = 3600


def books_balance(client: segment_lite.Client) -> dict[str, Any]:
    """Assert every accepted message is delivered or dropped with a reason, and none is left queued."""
    stats = client.stats()
    dropped = sum(stats["dropped"][reason] for reason in ACCEPTED_DROPS)
    assert stats["queued"] == 0, stats
    assert stats["delivered"] + dropped == stats["accepted"], stats
    return stats


def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


# -- 9. producers blocked for room while shutdown gives up -----------------------------------------


def test_producers_blocked_when_shutdown_gives_up_are_refused_and_counted() -> None:
    silent = SilentServer()
    try:
        client = segment_lite.Client(
            WRITE_KEY,
            host=silent.url,
            timeout=30,
            max_queue_size=10,
            upload_size=10,
            max_batch_size=10,
            upload_interval=ONLY_FLUSH_SENDS,
            on_full="block",
        )
        results: list[bool] = []
        lock = threading.Lock()

        def produce() -> None:
            accepted, _ = client.track("u", "Blocked")
            with lock:
                results.append(accepted)

        threads = [threading.Thread(target=produce) for _ in range(25)]
        for thread in threads:
            thread.start()
        # 10 in flight to a server that never answers, 10 queued, 5 blocked for room.
        assert silent.received.wait(5)
        wait_for(lambda: len(results) == 20 and client.queue.qsize() == 10)
        assert client.shutdown(timeout=0.3) is False
        for thread in threads:
            thread.join(5)
        assert not any(thread.is_alive() for thread in threads), "a producer is still blocked"
        assert sorted(results) == [False] * 5 + [True] * 20
        stats = books_balance(client)
        assert stats["accepted"] == 20
        assert stats["dropped"]["shutdown_timeout"] == 20
        assert stats["dropped"]["after_shutdown"] == 5
        # And every later call is refused and counted too.
        assert client.track("u", "Later")[0] is False
        assert client.stats()["dropped"]["after_shutdown"] == 6
    finally:
        silent.stop()


def _track_until_refused(client: segment_lite.Client, outcomes: list[bool], lock: threading.Lock) -> None:
    while True:
        accepted, _ = client.track("u", "Busy")
        with lock:
            outcomes.append(accepted)
        if not accepted:
            return


def test_eight_threads_tracking_through_a_shutdown_that_gives_up_lose_nothing_uncounted() -> None:
    silent = SilentServer()
    try:
        client = segment_lite.Client(
            WRITE_KEY, host=silent.url, timeout=30, max_queue_size=50, upload_size=20, on_full="block"
        )
        outcomes: list[bool] = []
        lock = threading.Lock()
        threads = [
            threading.Thread(target=_track_until_refused, args=(client, outcomes, lock)) for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        assert silent.received.wait(5)
        wait_for(lambda: client.queue.full())
        assert client.shutdown(timeout=1.0) is False
        for thread in threads:
            thread.join(5)
        assert not any(thread.is_alive() for thread in threads), "a producer is still blocked"
        stats = books_balance(client)
        assert outcomes.count(True) == stats["accepted"]
        assert outcomes.count(False) == 8 == stats["dropped"]["after_shutdown"]
        assert stats["dropped"]["shutdown_timeout"] == stats["accepted"] > 0
    finally:
        silent.stop()


def test_producers_let_in_during_a_clean_shutdown_are_delivered(make_client, collector) -> None:
    client = make_client(max_queue_size=20, upload_size=10, on_full="block")
    outcomes: list[bool] = []
    lock = threading.Lock()
    threads = [threading.Thread(target=_track_until_refused, args=(client, outcomes, lock)) for _ in range(8)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(outcomes) > 200)
    assert client.shutdown(timeout=10) is True
    for thread in threads:
        thread.join(5)
    assert not any(thread.is_alive() for thread in threads)
    stats = books_balance(client)
    assert stats["delivered"] == stats["accepted"] == outcomes.count(True)
    assert stats["dropped"]["after_shutdown"] == outcomes.count(False) == 8
    assert len(collector.messages()) == stats["delivered"]


# -- 10. a caller's objects that raise are refused or left out at their path, and counted -----------


class _Boom(Exception):
    pass


class RaisingStr:
    """An object whose __str__, __repr__ and __format__ all raise."""

    def __str__(self) -> str:
        raise _Boom("str")

    def __repr__(self) -> str:
        raise _Boom("repr")

    def __format__(self, spec: str) -> str:
        raise _Boom("format")


class RaisingFormatInt(int):
    def __format__(self, spec: str) -> str:
        raise _Boom("format")

    def __repr__(self) -> str:
        raise _Boom("repr")

    def __str__(self) -> str:
        raise _Boom("str")


class RaisingBoolStr(str):
    def __bool__(self) -> bool:
        raise _Boom("bool")

    def __len__(self) -> int:
        raise _Boom("len")


class RaisingBool:
    def __bool__(self) -> bool:
        raise _Boom("bool")

    def __len__(self) -> int:
        raise _Boom("len")


class RaisingKeys(Mapping[str, Any]):
    """A Mapping that cannot be read: keys(), iteration and lookup all raise."""

    def keys(self) -> Any:
        raise _Boom("keys")

    def __iter__(self) -> Iterator[str]:
        raise _Boom("iter")

    def __getitem__(self, key: str) -> Any:
        raise _Boom("getitem")

    def __len__(self) -> int:
        return 1


class NoOffset(datetime.tzinfo):
    """A tzinfo whose utcoffset() returns a number, not a timedelta."""

    def utcoffset(self, moment: Optional[datetime.datetime]) -> Any:
        return 5

    def dst(self, moment: Optional[datetime.datetime]) -> Any:
        return None

    def tzname(self, moment: Optional[datetime.datetime]) -> str:
        return "broken"


BROKEN_TIME = datetime.datetime(2024, 3, 1, 12, tzinfo=NoOffset())

#: (call keyword arguments, the error's class and path, or None when the call is accepted, in each mode)
REFUSED_IN_BOTH = [
    ({"timestamp": BROKEN_TIME}, ValidationError, "timestamp"),
    ({"user_id": RaisingStr()}, ValidationError, "userId"),
    ({"message_id": RaisingStr()}, ValidationError, "messageId"),
    ({"properties": RaisingBool()}, ValidationError, "properties"),
    ({"event": RaisingBool()}, ValidationError, "event"),
    ({"context": RaisingKeys()}, ValidationError, "context"),
]


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize(("kwargs", "error", "path"), REFUSED_IN_BOTH)
def test_arguments_that_raise_are_refused_naming_the_field_and_counted(
    strict: bool, kwargs: dict[str, Any], error: type[Exception], path: str
) -> None:
    """The reference refuses these too; neither mode lets the caller's exception escape."""
    client = RecordingClient(strict=strict)
    call = {"user_id": "u", "event": "Hostile", **kwargs}
    with pytest.raises(error) as refused:
        client.track(**call)
    assert refused.value.path == path  # type: ignore[attr-defined]
    assert path in str(refused.value)
    assert client.stats()["dropped"]["invalid"] == 1
    assert client.messages == []


def test_a_signaling_nan_is_left_out_when_lenient_and_refused_at_its_path_when_strict() -> None:
    lenient = RecordingClient(strict=False)
    accepted, _ = lenient.track("u", "Priced", {"price": decimal.Decimal("sNaN"), "qty": 2})
    assert accepted
    assert lenient.messages[0]["properties"] == {"qty": 2}
    assert lenient.stats()["warnings"]["value_dropped"] == 1
    strict = RecordingClient(strict=True)
    with pytest.raises(EncodeError) as refused:
        strict.track("u", "Priced", {"price": decimal.Decimal("sNaN")})
    assert refused.value.path == "properties.price"
    assert strict.stats()["dropped"]["encode_error"] == 1


@pytest.mark.parametrize("strict", [False, True])
def test_values_the_reference_sends_are_sent_without_calling_their_raising_methods(strict: bool) -> None:
    client = RecordingClient(strict=strict)
    assert client.track("u", RaisingBoolStr("Checked Out"), {RaisingFormatInt(3): "three", "n": 1})[0]
    assert client.track("u", "Nested", {"cart": {RaisingFormatInt(7): [1, 2]}})[0]
    sent = client.messages
    assert sent[0]["event"] == "Checked Out"
    assert sent[0]["properties"] == {"3": "three", "n": 1}
    assert sent[1]["properties"] == {"cart": {"7": [1, 2]}}
    assert client.stats()["dropped_total"] == 0


def test_values_that_raise_inside_properties_are_left_out_at_their_path_when_lenient() -> None:
    client = RecordingClient(strict=False)
    properties = {
        "when": BROKEN_TIME,
        "reader": RaisingKeys(),
        "object": RaisingStr(),
        "kept": "yes",
    }
    accepted, _ = client.track("u", "Hostile", properties, context={"page": {"tz": BROKEN_TIME}})
    assert accepted
    assert client.messages[0]["properties"] == {"kept": "yes"}
    assert client.messages[0]["context"]["page"] == {}
    assert client.stats()["warnings"]["value_dropped"] == 1  # one message, four values named in its report
    strict = RecordingClient(strict=True)
    with pytest.raises(EncodeError) as refused:
        strict.track("u", "Hostile", {"reader": RaisingKeys()})
    assert refused.value.path == "properties.reader"


def test_a_hook_that_returns_no_dict_is_counted_and_its_raising_repr_is_not_called() -> None:
    class Hook:
        def __call__(self, message: dict[str, Any]) -> Any:
            return "not a message"

        def __repr__(self) -> str:
            raise _Boom("repr")

    client = RecordingClient(before_send=Hook())
    with pytest.raises(ValidationError, match="must return a dict or None, got str"):
        client.track("u", "Hooked")
    assert client.stats()["dropped"]["invalid"] == 1


# -- 11. timestamp strings: only the documented ISO-8601 forms --------------------------------------


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        ("20240301120000", "a string of 14 digits"),
        ("1" * 5000, "a string of 5000 digits"),
        ("20240301T120000Z", "'20240301T120000Z'"),
        ("next tuesday", "'next tuesday'"),
        ("2024-03-01T12:00:00Z" + " " * 30 + "x" * 10, "a 60-character string"),
    ],
)
@pytest.mark.parametrize("strict", [False, True])
def test_timestamp_strings_outside_the_documented_forms_are_refused_naming_their_shape(
    strict: bool, text: str, shape: str
) -> None:
    client = RecordingClient(strict=strict)
    with pytest.raises(ValidationError) as refused:
        client.track("u", "Dated", timestamp=text)
    assert refused.value.path == "timestamp"
    assert f"got {shape}" in str(refused.value)
    assert len(str(refused.value)) < 300
    assert client.stats()["dropped"]["invalid"] == 1
    assert client.messages == []


@pytest.mark.parametrize(
    ("text", "sent"),
    [
        ("2024-03-01", "2024-03-01T00:00:00.000+00:00"),
        ("2024-03-01T12:00", "2024-03-01T12:00:00.000+00:00"),
        ("2024-03-01T12:00:00Z", "2024-03-01T12:00:00.000+00:00"),
        ("2024-03-01t12:00:00.5z", "2024-03-01T12:00:00.500+00:00"),
        ("2024-03-01 12:00:00.123456789+02:00", "2024-03-01T12:00:00.123+02:00"),
        ("2024-03-01T12:00:00-0530", "2024-03-01T12:00:00.000-05:30"),
        ("2024-03-01T12:00:00 +01", "2024-03-01T12:00:00.000+01:00"),
    ],
)
def test_documented_timestamp_strings_are_sent_with_their_offset(text: str, sent: str) -> None:
    client = RecordingClient()
    client.track("u", "Dated", timestamp=text)
    assert client.messages[0]["timestamp"] == sent


# -- 10. fuzzed: hostile objects never escape a call, and every call is accepted or counted ---------

# derandomize: the same examples every run, so a pass or a failure is reproducible; a small budget.
HOSTILE_FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class RaisingEquality(RaisingStr):
    def __eq__(self, other: object) -> bool:
        raise _Boom("eq")

    __hash__ = object.__hash__


class RaisingItemsDict(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        raise _Boom("items")

    def keys(self) -> Any:
        raise _Boom("keys")

    def __iter__(self) -> Any:
        raise _Boom("iter")


class RaisingFloat(float):
    def __repr__(self) -> str:
        raise _Boom("repr")

    def __gt__(self, other: object) -> bool:
        raise _Boom("gt")


class RaisingIsoformat(datetime.datetime):
    def isoformat(self, *args: Any, **kwargs: Any) -> str:
        raise _Boom("isoformat")


def _nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for index in range(depth):
        value = {"k": value} if index % 2 else [value]
    return value


def _circular() -> Any:
    loop: dict[str, Any] = {"name": "loop"}
    loop["self"] = loop
    return loop


hostile_leaves = st.one_of(
    st.sampled_from(
        [
            decimal.Decimal("sNaN"),
            decimal.Decimal("NaN"),
            decimal.Decimal("-Infinity"),
            float("nan"),
            float("inf"),
            b"\xff\xfe",
            "\ud800",
            BROKEN_TIME,
        ]
    ),
    st.builds(RaisingStr),
    st.builds(RaisingBool),
    st.builds(RaisingKeys),
    st.builds(RaisingEquality),
    st.builds(RaisingFormatInt, st.integers(-5, 5)),
    st.builds(RaisingBoolStr, st.text(max_size=4)),
    st.builds(RaisingFloat, st.floats(allow_nan=True)),
    st.builds(RaisingItemsDict),
    st.builds(lambda: RaisingIsoformat(2024, 1, 1)),
    st.builds(_circular),
    st.text(max_size=5),
    st.integers(),
)
hostile_keys = st.one_of(
    st.text(max_size=4),
    st.builds(RaisingFormatInt, st.integers(-3, 3)),
    st.builds(RaisingBoolStr, st.text(max_size=3)),
    st.builds(RaisingFloat, st.floats(-2, 2)),
    st.builds(RaisingEquality),
    st.builds(RaisingStr),
    st.integers(-3, 3),
)
hostile_values = st.one_of(
    st.recursive(
        hostile_leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(hostile_keys, children, max_size=3),
            st.tuples(children),
        ),
        max_leaves=8,
    ),
    st.builds(_nested, st.integers(1, 3 * MAX_NESTING_DEPTH), hostile_leaves),
)
hostile_containers = st.dictionaries(hostile_keys, hostile_values, max_size=4)
anything = st.one_of(st.none(), hostile_values, hostile_keys)


def _counted(client: RecordingClient) -> int:
    stats = client.stats()
    return int(stats["accepted"] + stats["dropped_total"])


@HOSTILE_FUZZ
@given(
    properties=hostile_containers,
    context=hostile_containers,
    traits=hostile_containers,
    orjson=st.booleans(),
)
def test_hostile_values_where_the_reference_sends_never_make_a_lenient_call_raise(
    properties: dict[Any, Any], context: dict[Any, Any], traits: dict[Any, Any], orjson: bool
) -> None:
    encoding.HAVE_ORJSON = orjson and HAVE_ORJSON  # the autouse fixture restores it
    client = RecordingClient(strict=False)
    assert client.track("u", "Hostile", properties, context)[0]
    assert client.identify("u", traits, context)[0]
    assert client.page("u", "Docs", "Home", properties)[0]
    assert client.stats()["accepted"] == 3 == len(client.messages)
    for sent in client.messages:  # what went on the wire is plain, finite JSON within the limit
        json.loads(json.dumps(sent, allow_nan=False))


@HOSTILE_FUZZ
@given(
    strict=st.booleans(),
    user_id=anything,
    event=anything,
    properties=st.one_of(hostile_containers, anything),
    context=st.one_of(hostile_containers, anything),
    timestamp=st.one_of(anything, st.datetimes(timezones=st.none() | st.timezones())),
    message_id=anything,
)
def test_hostile_arguments_anywhere_raise_only_library_errors_and_every_call_is_counted(
    strict: bool, user_id: Any, event: Any, properties: Any, context: Any, timestamp: Any, message_id: Any
) -> None:
    client = RecordingClient(strict=strict)
    before = _counted(client)
    try:
        client.track(user_id, event, properties, context, timestamp, message_id=message_id)
    except (ValidationError, EncodeError) as exc:
        assert str(exc)  # its text can be formatted (no caller's code runs in it)
    assert _counted(client) == before + 1, "the call was accepted or counted, exactly once"


# -- 12. credentials echoed back by a server are masked in every form they were sent ----------------

ECHO_KEY = "wk_live_4f9c2a7e81b34d0fa6c5e2d19b7a3c60"


class EchoServer:
    """A loopback server that refuses every batch, quoting the ``Authorization`` header it got.

    With ``token_answer`` it is also an OAuth auth server: ``POST /token`` answers
    ``token_answer(assertion)`` as (status, JSON object).
    """

    def __init__(self, status: int = 400, token_answer: Any = None) -> None:
        self.status = status
        self.token_answer = token_answer
        self.authorizations: list[str] = []
        self.assertions: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/token":
                    assertion = urllib.parse.parse_qs(body.decode())["client_assertion"][0]
                    server.assertions.append(assertion)
                    status, answer = server.token_answer(assertion)
                else:
                    header = self.headers.get("Authorization", "")
                    server.authorizations.append(header)
                    status, answer = server.status, {"code": f"bad {header}", "message": f"refused {header}"}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.stop()


def basic_forms(key: str) -> list[str]:
    """The write key as sent: as is, and base64 of ``key:`` (HTTP Basic), padded or not, standard or URL-safe."""
    encoded = base64.b64encode(f"{key}:".encode()).decode()
    return [key, encoded, encoded.rstrip("="), base64.urlsafe_b64encode(f"{key}:".encode()).decode()]


def assert_masked(secrets: list[str], *texts: str) -> None:
    for text in texts:
        assert "***" in text, text
        for secret in secrets:
            assert secret not in text, (secret, text)


def test_a_server_echoing_basic_auth_never_puts_the_key_in_logs_errors_or_reprs(echo, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="segment")
    errors: list[BaseException] = []
    client = segment_lite.Client(
        ECHO_KEY, host=echo.url, on_error=lambda exc, messages: errors.append(exc), debug=True
    )
    try:
        assert client.track("u", "Echoed")[0]
        assert client.flush(timeout=10)
        flushed = client.last_flush
    finally:
        client.shutdown(timeout=5)
    [header] = echo.authorizations
    assert header == "Basic " + base64.b64encode(f"{ECHO_KEY}:".encode()).decode()  # the server saw it
    [error] = errors
    assert flushed is not None and flushed.last_error
    assert_masked(
        basic_forms(ECHO_KEY),
        caplog.text,
        str(error),
        repr(error),
        getattr(error, "message", ""),
        getattr(error, "code", ""),
        flushed.last_error,
        repr(flushed),
    )
    assert ECHO_KEY not in repr(client)


def test_retried_failures_and_sync_mode_mask_the_echoed_key_too(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="segment")
    server = EchoServer(status=503)
    try:
        errors: list[BaseException] = []
        client = segment_lite.Client(
            ECHO_KEY,
            host=server.url,
            max_retries=1,
            clock=FakeClock(),
            on_error=lambda exc, messages: errors.append(exc),
        )
        client.track("u", "Retried")
        assert client.flush(timeout=10)
        client.shutdown(timeout=5)
        [exhausted] = errors
        assert client.stats()["dropped"]["retries_exhausted"] == 1
        server.status = 400
        sync = segment_lite.Client(ECHO_KEY, host=server.url, sync_mode=True)
        with pytest.raises(segment_lite.APIError) as raised:
            sync.track("u", "Sync")
        assert len(server.authorizations) == 3
        assert_masked(
            basic_forms(ECHO_KEY), caplog.text, str(exhausted), str(raised.value), raised.value.code
        )
    finally:
        server.stop()


def test_the_reference_style_request_post_masks_the_echoed_key(echo) -> None:
    from segment_lite import request

    with pytest.raises(segment_lite.APIError) as raised:
        request.post(ECHO_KEY, host=echo.url, batch=[{"type": "track", "event": "E", "userId": "u"}])
    assert_masked(basic_forms(ECHO_KEY), str(raised.value), raised.value.message, raised.value.code)


def _private_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _oauth_client(server: EchoServer, errors: list[BaseException]) -> segment_lite.Client:
    return segment_lite.Client(
        ECHO_KEY,
        host=server.url,
        oauth_client_id="client-1",
        oauth_client_key=_private_key(),
        oauth_key_id="key-1",
        oauth_auth_server=server.url,
        on_error=lambda exc, messages: errors.append(exc),
        debug=True,
    )


def test_an_echoed_bearer_token_is_masked(caplog) -> None:
    pytest.importorskip("jwt")
    caplog.set_level(logging.DEBUG, logger="segment")
    token = "tok_" + "9d1e7c3b5a" * 4
    server = EchoServer(token_answer=lambda assertion: (200, {"access_token": token, "expires_in": 3600}))
    errors: list[BaseException] = []
    client = _oauth_client(server, errors)
    try:
        client.track("u", "Bearer")
        assert client.flush(timeout=10)
    finally:
        client.shutdown(timeout=5)
        server.stop()
    assert server.authorizations == [f"Bearer {token}"]
    [error] = errors
    assert_masked([token], caplog.text, str(error), getattr(error, "code", ""))


def test_an_assertion_echoed_by_the_auth_server_is_masked(caplog) -> None:
    pytest.importorskip("jwt")
    caplog.set_level(logging.DEBUG, logger="segment")
    server = EchoServer(
        token_answer=lambda assertion: (
            400,
            {"error": f"invalid_client {assertion}", "error_description": f"refused assertion {assertion}"},
        )
    )
    errors: list[BaseException] = []
    client = _oauth_client(server, errors)
    try:
        client.track("u", "Asserted")
        assert client.flush(timeout=10)
    finally:
        client.shutdown(timeout=5)
        server.stop()
    [assertion] = server.assertions
    signature = assertion.rpartition(".")[2]
    [error] = errors
    assert_masked([assertion, signature], caplog.text, str(error), getattr(error, "message", ""))
    assert server.authorizations == [], "no batch went out without a token"


def test_credentials_are_masked_in_every_encoding_and_never_inside_a_word() -> None:
    credentials = Credentials()
    credentials.add(ECHO_KEY)
    credentials.add_proxy_credentials("http://bob:pr%40xy-pass-77@proxy.internal:3128")
    basic = base64.b64encode(f"{ECHO_KEY}:".encode()).decode()
    proxy_basic = base64.b64encode(b"bob:pr@xy-pass-77").decode()
    text = (
        f"key={ECHO_KEY} basic={basic} bare={basic.rstrip('=')} json={json.dumps(ECHO_KEY)} "
        f"proxy={proxy_basic} password=pr@xy-pass-77"
    )
    assert credentials.redact(text) == 'key=*** basic=*** bare=*** json="***" proxy=*** password=***'
    short = Credentials()
    short.add("k")  # a short key: masked where it stands alone, never inside a word
    assert short.redact("wrong write key: k") == "wrong write key: ***"


def test_no_repr_of_the_delivery_settings_shows_the_key() -> None:
    client = segment_lite.Client(ECHO_KEY, send=False)
    assert ECHO_KEY not in repr(client._pipeline.delivery)
    assert ECHO_KEY not in repr(client)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), 1.5])
def test_a_float_subclass_whose_repr_raises_is_sent_as_its_plain_value(value: float) -> None:
    # Python 3.12+ put a non-finite value's repr() into the encoder's error, which called the subclass's.
    client = segment_lite.Client("k", send=False)
    try:
        ok, message = client.track("u", "Measured", {"x": RaisingFloat(value), "kept": 1})
        assert ok and message is not None
        sent = message["properties"]["x"]
        assert type(sent) is float or sent is None
        assert message["properties"]["kept"] == 1
        assert client.stats()["dropped_total"] == 0
    finally:
        client.shutdown()
