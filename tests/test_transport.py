"""The requests transport classifies failures for the retry layer."""

from __future__ import annotations

import base64
import http.client

import pytest
import requests
import urllib3

from segment_lite.transport import RequestsTransport, TransportError, _is_stale
from tests.conftest import WRITE_KEY


def wrapped(cause: BaseException) -> requests.exceptions.ConnectionError:
    """A failure nested the way requests and urllib3 nest it."""
    return requests.exceptions.ConnectionError(urllib3.exceptions.ProtocolError("Connection aborted.", cause))


@pytest.mark.parametrize(
    ("error", "stale"),
    [
        (wrapped(http.client.RemoteDisconnected("Remote end closed connection without response")), True),
        (wrapped(ConnectionResetError(104, "Connection reset by peer")), True),
        (wrapped(BrokenPipeError(32, "Broken pipe")), True),
        (requests.exceptions.ConnectionError(ConnectionRefusedError(111, "Connection refused")), False),
        (requests.exceptions.ConnectionError("Name or service not known"), False),
    ],
)
def test_stale_connection_classification(error, stale) -> None:
    assert _is_stale(error) is stale


def test_only_a_reused_connection_can_be_stale(collector) -> None:
    transport = RequestsTransport()
    url = collector.url + "/v1/batch"
    body = b'{"batch":[{"type":"track","event":"E","userId":"u","messageId":"m-1"}]}'
    collector.reset_next(1)
    with pytest.raises(TransportError) as first:
        transport.post(url, body, {"Content-Type": "application/json"}, 5)
    assert first.value.stale_connection is False  # a fresh connection: a real failure, back off
    assert transport.post(url, body, {"Content-Type": "application/json"}, 5).status == 200
    collector.reset_next(1)
    with pytest.raises(TransportError) as second:
        transport.post(url, body, {"Content-Type": "application/json"}, 5)
    assert second.value.stale_connection is True  # a pooled connection died: retry at once
    transport.close()


def test_refused_connection_is_not_stale(collector) -> None:
    transport = RequestsTransport()
    url = collector.url + "/v1/batch"
    assert transport.post(url, b'{"batch":[]}', {}, 5).status in (200, 400)
    collector.go_down()
    with pytest.raises(TransportError) as refused:
        transport.post(url, b'{"batch":[]}', {}, 5)
    assert refused.value.stale_connection is False
    assert "timed out" not in str(refused.value)


def test_netrc_credentials_never_replace_the_write_key(collector, make_client, tmp_path, monkeypatch) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone-else password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    client = make_client(sync_mode=True)
    client.track("u", "Authenticated")
    expected = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    assert collector.requests[0].headers["Authorization"] == expected
