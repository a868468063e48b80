"""OAuth: the client's token source and Bearer transport, and how failures are reported."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import segment_lite

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
    with caplog.at_level(logging.WARNING, logger="segment_lite"):
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
