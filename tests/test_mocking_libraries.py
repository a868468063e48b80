"""HTTP mocking libraries see every batch of a default client: responses, requests-mock, VCR.py, mock.patch."""

from __future__ import annotations

import json
import socket
import unittest
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
import requests
import requests.adapters
import requests_mock
import responses

import segment_lite
from segment_lite.pipeline import _LIVE
from segment_lite.request import ReferenceSeamTransport, requests_intercepted
from segment_lite.transport import Urllib3Transport
from tests.conftest import WRITE_KEY

BATCH_URL = "https://api.segment.io/v1/batch"
OK = {"success": True}


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fails any name lookup but loopback's, and lists the names looked up (none may be)."""
    looked_up: list[str] = []
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in ("127.0.0.1", "localhost", "::1"):
            looked_up.append(str(host))
            raise socket.gaierror(-2, f"no network in this test (looked up {host})")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    yield looked_up
    assert looked_up == [], "a request went past the mock to the network"


@pytest.fixture
def clients() -> Iterator[list[segment_lite.Client]]:
    made: list[segment_lite.Client] = []
    yield made
    for client in made:
        client.shutdown(timeout=2)


def _track_the_reference_way(clients: list[segment_lite.Client]) -> segment_lite.Client:
    """What the reference's tests do: a client on Segment's endpoint, six calls, a flush."""
    errors: list[BaseException] = []
    client = segment_lite.Client(WRITE_KEY, on_error=lambda exc, batch: errors.append(exc))
    clients.append(client)
    client.identify("user-1", {"email": "u@example.com"})
    client.track("user-1", "Signed Up", {"plan": "pro"})
    client.page("user-1", "Docs", "Setup")
    client.screen("user-1", "Home")
    client.group("user-1", "group-1", {"name": "Acme"})
    client.alias("user-1", "previous-id")
    assert client.flush(timeout=10)
    assert errors == []
    return client


def _messages(bodies: list[bytes]) -> list[dict[str, Any]]:
    batches = [json.loads(body) for body in bodies]
    assert all(batch["writeKey"] == WRITE_KEY for batch in batches)
    return [message for batch in batches for message in batch["batch"]]


EXPECTED_TYPES = ["identify", "track", "page", "screen", "group", "alias"]


@pytest.mark.usefixtures("no_network")
def test_responses_sees_every_batch(clients) -> None:
    with responses.RequestsMock() as mocked:
        mocked.add(responses.POST, BATCH_URL, json=OK)
        client = _track_the_reference_way(clients)
        messages = _messages([call.request.body for call in mocked.calls])
    assert [m["type"] for m in messages] == EXPECTED_TYPES
    assert messages[1]["event"] == "Signed Up" and messages[1]["properties"] == {"plan": "pro"}
    assert client.stats()["delivered"] == 6


@pytest.mark.usefixtures("no_network")
def test_a_refusal_from_responses_is_reported_as_the_server_s(clients) -> None:
    errors: list[BaseException] = []
    client = segment_lite.Client(WRITE_KEY, on_error=lambda exc, batch: errors.append(exc))
    clients.append(client)
    with responses.RequestsMock() as mocked:
        mocked.add(responses.POST, BATCH_URL, status=401, json={"code": "invalid_write_key", "message": "no"})
        client.track("user-1", "Refused")
        assert client.flush(timeout=10)
    assert [getattr(exc, "status", None) for exc in errors] == [401]
    assert client.stats()["dropped"]["rejected"] == 1


@pytest.mark.usefixtures("no_network")
def test_requests_mock_sees_every_batch(clients) -> None:
    with requests_mock.Mocker() as mocked:
        mocked.post(BATCH_URL, json=OK)
        client = _track_the_reference_way(clients)
        messages = _messages([request.body for request in mocked.request_history])
        headers = mocked.request_history[0].headers
    assert [m["type"] for m in messages] == EXPECTED_TYPES
    assert headers["Content-Type"] == "application/json" and headers["Authorization"].startswith("Basic ")
    assert client.stats()["delivered"] == 6


@pytest.mark.usefixtures("no_network")
def test_a_patched_adapter_send_sees_every_batch(clients) -> None:
    seen: list[bytes] = []

    def send(adapter: Any, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        seen.append(request.body)  # type: ignore[arg-type]
        response = requests.Response()
        response.status_code, response._content = 200, b'{"success":true}'
        return response

    with mock.patch.object(requests.adapters.HTTPAdapter, "send", send):
        client = _track_the_reference_way(clients)
    assert [m["type"] for m in _messages(seen)] == EXPECTED_TYPES
    assert client.stats()["delivered"] == 6


def test_nothing_patched_keeps_the_fast_transport(collector, make_client) -> None:
    assert not requests_intercepted()
    client = make_client(sync_mode=True)
    client.track("u", "Fast")
    [sender] = client._pipeline._thread_senders
    transport = sender._transport
    assert isinstance(transport, ReferenceSeamTransport) and isinstance(transport.inner, Urllib3Transport)
    assert transport._through_requests is None  # requests was never used
    assert collector.wait_for_messages(1)


def test_vcr_records_and_replays_batches(collector, tmp_path, monkeypatch) -> None:
    vcr = pytest.importorskip("vcr")
    cassette = str(tmp_path / "batches.yaml")
    monkeypatch.setattr(segment_lite.transport, "DEFAULT_HOST", collector.url)
    with vcr.use_cassette(cassette) as recording:
        client = segment_lite.Client(WRITE_KEY)
        client.track("user-1", "Recorded")
        assert client.flush(timeout=10)
        client.shutdown(timeout=2)
    assert len(recording) == 1 and collector.wait_for_messages(1)
    collector.go_down()  # the replay must come from the cassette
    with vcr.use_cassette(cassette) as replaying:
        client = segment_lite.Client(WRITE_KEY)
        client.track("user-1", "Replayed")
        assert client.flush(timeout=10)
        stats = client.stats()
        client.shutdown(timeout=2)
    assert replaying.play_count == 1 and stats["delivered"] == 1
    body = json.loads(replaying.requests[0].body)
    assert body["batch"][0]["event"] == "Recorded"  # what was recorded, and matched by URL


# -- the reference's own public-API tests, with responses in place of a server ----------------

try:
    from tests.test_reference_suite import _MODULES, NETWORK_FREE_CLASSES, _cases
except Exception:  # pragma: no cover - segment-analytics-python absent: that module skips itself
    _MODULES, NETWORK_FREE_CLASSES, _cases = {}, (), lambda: iter(())  # type: ignore[assignment]


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize(
    ("module_name", "class_name", "test_name"),
    [case for case in _cases() if case.values[1] not in NETWORK_FREE_CLASSES],
)
def test_reference_suite_under_responses(module_name: str, class_name: str, test_name: str) -> None:
    module, load_error = _MODULES[module_name]
    assert module is not None, load_error
    before = set(_LIVE)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        mocked.add(responses.POST, BATCH_URL, json=OK)
        result = unittest.TestResult()
        getattr(module, class_name)(test_name).run(result)
        for pipeline in set(_LIVE) - before:
            pipeline.shutdown(timeout=2.0)
    problems = [text for _, text in result.errors + result.failures]
    assert not problems, "\n".join(problems)
