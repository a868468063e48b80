"""OAuth: the client's token source and Bearer transport, and how failures are reported."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

import segment_lite
from segment_lite.collector import Auth, Collector

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_key_that_cannot_sign_reaches_on_error_and_never_raises_from_track(collector) -> None:
    errors: list[BaseException] = []
    client = segment_lite.Client(
        "oauth-key",
        host=collector.url,
        on_error=lambda exc, messages: errors.append(exc),
        oauth_client_id="id",
        oauth_client_key="not a PEM key",
        oauth_key_id="kid",
        oauth_auth_server=collector.url,
    )
    try:
        ok, _ = client.track("u", "Signed In")
        assert ok
        assert client.flush(timeout=10)
    finally:
        client.shutdown(timeout=5)
    [error] = errors
    assert (getattr(error, "code", None), getattr(error, "status", None)) == ("invalid_client_key", 401)
    assert "cannot sign the client assertion" in str(getattr(error, "message", ""))
    assert client.stats()["dropped"]["rejected"] == 1
    assert collector.message_ids() == set(), "nothing reached the tracking endpoint"


def test_partial_oauth_settings_warn_and_fall_back_to_the_write_key(collector, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="segment"):
        client = segment_lite.Client("partial-key", host=collector.url, oauth_client_id="id")
    try:
        client.track("u", "Partial")
        assert client.flush(timeout=10)
    finally:
        client.shutdown(timeout=5)
    assert "oauth_client_id, oauth_client_key and oauth_key_id together" in caplog.text
    assert len(collector.message_ids()) == 1


def test_without_the_extra_oauth_names_the_extra_to_install() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["jwt"] = None  # PyJWT not installed
        import segment_lite
        try:
            segment_lite.Client("k", oauth_client_id="i", oauth_client_key="k", oauth_key_id="d")
        except segment_lite.ValidationError as exc:
            print("refused:", exc)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )
    assert "refused:" in result.stdout, result.stderr
    assert "pip install 'segment-lite[oauth]'" in result.stdout


def test_importing_segment_lite_does_not_import_jwt() -> None:
    script = "import sys, segment_lite; segment_lite.Client('k'); print('jwt' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )
    assert result.stdout.strip() == "False", result.stderr


# -- end to end, against the collector's OAuth mode ------------------------------------


def _rsa_pair() -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return _rsa_pair()


@pytest.fixture
def oauth_collector(keys: tuple[str, str]) -> Iterator[Collector]:
    with Collector(auth=Auth(oauth_public_key=keys[1])) as server:
        yield server


def _oauth_client(collector: Collector, private_key: str, **kwargs: Any) -> segment_lite.Client:
    return segment_lite.Client(
        "oauth-write-key",
        host=collector.url,
        oauth_client_id="client-1",
        oauth_client_key=private_key,
        oauth_key_id="key-1",
        oauth_auth_server=collector.url,
        **kwargs,
    )


def test_batches_carry_a_bearer_token_fetched_once_and_shared(oauth_collector, keys) -> None:
    client = _oauth_client(oauth_collector, keys[0], thread=2, upload_size=20, max_batch_size=20)
    try:
        for i in range(200):
            client.track("u", "Paid", {"i": i})
        assert client.flush(timeout=20)
    finally:
        client.shutdown(timeout=5)
    assert len(oauth_collector.message_ids()) == 200
    assert oauth_collector.oauth is not None and oauth_collector.oauth.issued == 1
    requests = oauth_collector.requests
    assert len(requests) >= 10
    assert all(r.headers.get("Authorization", "").startswith("Bearer ") for r in requests)
    assert client.stats()["delivered"] == 200


def test_a_token_the_server_stopped_accepting_is_replaced_without_losing_the_batch(
    oauth_collector, keys
) -> None:
    client = _oauth_client(oauth_collector, keys[0])
    try:
        client.track("u", "First")
        assert client.flush(timeout=10)
        assert oauth_collector.oauth is not None
        assert oauth_collector.oauth.expire_all() == 1
        client.track("u", "Second")
        assert client.flush(timeout=10)
    finally:
        client.shutdown(timeout=5)
    assert len(oauth_collector.message_ids()) == 2
    assert oauth_collector.oauth.issued == 2
    assert client.stats()["dropped_total"] == 0


def test_an_assertion_signed_with_the_wrong_key_is_reported_not_raised(oauth_collector) -> None:
    wrong_private, _ = _rsa_pair()
    errors: list[BaseException] = []
    client = _oauth_client(oauth_collector, wrong_private, on_error=lambda exc, msgs: errors.append(exc))
    try:
        assert client.track("u", "Refused")[0]
        assert client.flush(timeout=10)
    finally:
        client.shutdown(timeout=5)
    [error] = errors
    assert getattr(error, "code", None) == "invalid_client"
    assert "client assertion refused" in str(getattr(error, "message", ""))
    assert oauth_collector.message_ids() == set()
    assert client.stats()["dropped"]["rejected"] == 1


def test_oauth_mode_refuses_basic_auth(oauth_collector) -> None:
    errors: list[BaseException] = []
    client = segment_lite.Client(
        "plain-key", host=oauth_collector.url, on_error=lambda exc, msgs: errors.append(exc)
    )
    try:
        client.track("u", "Basic")
        assert client.flush(timeout=10)
    finally:
        client.shutdown(timeout=5)
    assert [getattr(e, "status", None) for e in errors] == [401]
    assert oauth_collector.message_ids() == set()


def test_serve_with_an_unreadable_public_key_exits_with_a_clear_error(tmp_path, capsys) -> None:
    from segment_lite.cli import main

    code = main(["serve", "--port", "0", "--oauth-public-key", str(tmp_path / "missing.pem")])
    assert code == 1
    assert "cannot read --oauth-public-key" in capsys.readouterr().err
