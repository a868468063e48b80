"""The framework examples import, serve one page and track it."""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
from integration_helpers import BROWSER_UA, ASGITestClient, page_message, wire

from segment_lite.testing import recording

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
REPO_ROOT = EXAMPLES.parent


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"segment_lite_example_{name}", EXAMPLES / name / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flask_example_serves_and_tracks() -> None:
    pytest.importorskip("flask")
    with recording() as recorder:
        module = load_example("flask_app")
        response = module.app.test_client().get("/", headers={"User-Agent": BROWSER_UA})
    assert response.status_code == 200
    [message] = recorder.messages
    assert response.get_data(as_text=True).endswith(f"Hello, {message['anonymousId']}</h1>")
    assert wire(message) == page_message(
        anonymous_id=message["anonymousId"], host="localhost", title="Home", name="Home"
    )


def test_fastapi_example_serves_and_tracks() -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")

    with recording() as recorder:
        module = load_example("fastapi_app")
        with ASGITestClient(module.app) as client:
            response = client.get("/", headers={"User-Agent": BROWSER_UA})
    assert response.status_code == 200
    [message] = recorder.messages
    assert response.text.endswith(f"Hello, {message['anonymousId']}</h1>")
    assert wire(message) == page_message(
        anonymous_id=message["anonymousId"], title="Home", name="Home", ip="testclient"
    )


def test_django_example_serves_and_tracks_to_the_collector() -> None:
    # Django settings are process-wide, so the example runs in its own interpreter and
    # delivers to a real local collector through SEGMENT_HOST.
    pytest.importorskip("django")
    collector_module = pytest.importorskip("segment_lite.collector")
    script = textwrap.dedent(
        f"""
        import app
        import segment_lite
        from django.test import Client

        response = Client(HTTP_USER_AGENT={BROWSER_UA!r}).get("/")
        assert response.status_code == 200, response.status_code
        print(response.content.decode())
        assert segment_lite.flush(timeout=10)
        """
    )
    with collector_module.Collector() as collector:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
            "SEGMENT_HOST": collector.url,
            "SEGMENT_WRITE_KEY": "example-key",
        }
        result = subprocess.run(
            [sys.executable, "-c", script],
            cwd=EXAMPLES / "django_app",
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert collector.wait_for_messages(1, timeout=10)
        [message] = collector.messages()
    assert result.stdout.strip().endswith(f"Hello, {message['anonymousId']}</h1>")
    assert message["type"] == "page"
    assert message["name"] == "Home"
    assert message["properties"] == {
        "host": "testserver",
        "path": "/",
        "referrer": "",
        "search": "",
        "url": "http://testserver/",
        "title": "Home",
    }
    assert message["context"]["userAgent"] == BROWSER_UA


def test_django_example_views_track_carries_the_requests_anonymous_id() -> None:
    pytest.importorskip("django")
    collector_module = pytest.importorskip("segment_lite.collector")
    script = textwrap.dedent(
        f"""
        import app
        import segment_lite
        from django.test import Client

        response = Client(HTTP_USER_AGENT={BROWSER_UA!r}).get("/trial/?utm_source=newsletter")
        assert response.status_code == 200, response.status_code
        assert segment_lite.flush(timeout=10)
        """
    )
    with collector_module.Collector() as collector:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
            "SEGMENT_HOST": collector.url,
            "SEGMENT_WRITE_KEY": "example-key",
        }
        result = subprocess.run(
            [sys.executable, "-c", script],
            cwd=EXAMPLES / "django_app",
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert collector.wait_for_messages(2, timeout=10)
        messages = {m["type"]: m for m in collector.messages()}
    track, page_call = messages["track"], messages["page"]
    assert track["event"] == "Trial Started" and track["properties"] == {"plan": "pro"}
    assert track["anonymousId"] == page_call["anonymousId"]
    for key in ("ip", "userAgent", "page", "campaign"):
        assert track["context"][key] == page_call["context"][key], key
    assert track["context"]["campaign"] == {"source": "newsletter"}


@pytest.mark.parametrize("name", ["flask_app", "fastapi_app"])
def test_examples_say_why_curl_is_not_tracked(name: str, caplog: pytest.LogCaptureFixture) -> None:
    # curl counts as a bot: the examples run with debug on, so the reason is logged.
    pytest.importorskip("flask" if name == "flask_app" else "fastapi")
    caplog.set_level(logging.DEBUG, logger="segment_lite.integrations")
    with recording() as recorder:
        module = load_example(name)
        if name == "flask_app":
            module.app.test_client().get("/", headers={"User-Agent": "curl/8.5.0"})
        else:
            with ASGITestClient(module.app) as client:
                client.get("/", headers={"User-Agent": "curl/8.5.0"})
    assert recorder.messages == []
    assert "pageview skipped: GET '/': User-Agent 'curl/8.5.0' counts as a bot" in caplog.text
