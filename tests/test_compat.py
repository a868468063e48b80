"""Drop-in compatibility with segment-analytics-python 2.x: names, parameters, defaults, scripts."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap

import pytest

import segment_lite

CALLS = ("identify", "track", "alias", "group", "page", "screen")

# The 2.x surface, written down so the test stands even where the reference is not installed.
REFERENCE_CALL_PARAMETERS = {
    "identify": ["user_id", "traits", "context", "timestamp", "anonymous_id", "integrations", "message_id"],
    "track": ["user_id", "event", "properties", "context", "timestamp", "anonymous_id", "integrations", "message_id"],
    "alias": ["previous_id", "user_id", "context", "timestamp", "integrations", "message_id"],
    "group": ["user_id", "group_id", "traits", "context", "timestamp", "anonymous_id", "integrations", "message_id"],
    "page": [
        "user_id", "category", "name", "properties", "context", "timestamp", "anonymous_id", "integrations",
        "message_id",
    ],
    "screen": [
        "user_id", "category", "name", "properties", "context", "timestamp", "anonymous_id", "integrations",
        "message_id",
    ],
}  # fmt: skip
REFERENCE_CLIENT_DEFAULTS = {
    "write_key": None,
    "host": None,
    "debug": False,
    "max_queue_size": 10000,
    "send": True,
    "on_error": None,
    "gzip": False,
    "max_retries": 10,
    "sync_mode": False,
    "timeout": 15,
    "proxies": None,
    "thread": 1,
    "upload_size": 100,
    "upload_interval": 0.5,
    "log_handler": None,
}
REFERENCE_MODULE_SETTINGS = [
    "write_key", "host", "on_error", "debug", "log_handler", "send", "sync_mode", "max_queue_size", "gzip",
    "timeout", "max_retries", "default_client",
]  # fmt: skip


def parameters(function) -> list[str]:
    return [name for name in inspect.signature(function).parameters if name != "self"]


@pytest.mark.parametrize("call", CALLS)
def test_call_parameters_match_in_name_and_order(call: str) -> None:
    assert parameters(getattr(segment_lite.Client, call)) == REFERENCE_CALL_PARAMETERS[call]
    assert callable(getattr(segment_lite, call))


def test_client_keyword_arguments_and_defaults() -> None:
    signature = inspect.signature(segment_lite.Client.__init__).parameters
    names = list(signature)[1:]
    assert names[: len(REFERENCE_CLIENT_DEFAULTS)] == list(REFERENCE_CLIENT_DEFAULTS)
    for name, default in REFERENCE_CLIENT_DEFAULTS.items():
        assert signature[name].default == default, name


def test_module_settings_and_functions_exist() -> None:
    for name in REFERENCE_MODULE_SETTINGS:
        assert hasattr(segment_lite, name), name
    for name in ("flush", "join", "shutdown", *CALLS):
        assert callable(getattr(segment_lite, name))


def test_public_all_is_complete() -> None:
    public = {
        name
        for name, value in vars(segment_lite).items()
        if not name.startswith("_") and not inspect.ismodule(value) and (callable(value) or name.isupper())
    }
    typing_helpers = {"Optional", "Any", "Mapping"}
    assert public <= set(segment_lite.__all__) | typing_helpers, public - set(segment_lite.__all__)
    for name in segment_lite.__all__:
        assert hasattr(segment_lite, name)


def test_matches_the_installed_reference_client() -> None:
    reference = pytest.importorskip("segment.analytics")
    for call in CALLS:
        assert parameters(getattr(segment_lite.Client, call)) == parameters(getattr(reference.Client, call))
    ours = inspect.signature(segment_lite.Client.__init__).parameters
    for name, parameter in inspect.signature(reference.Client.__init__).parameters.items():
        if name == "self":
            continue
        assert name in ours, f"Client(...) lacks {name}"
        assert ours[name].default == parameter.default, name
    for name in vars(reference):
        if not name.startswith("_") and not inspect.ismodule(getattr(reference, name)):
            assert hasattr(segment_lite, name), f"segment_lite lacks module attribute {name}"


def test_calls_return_success_and_message() -> None:
    client = segment_lite.Client("key", send=False)
    for call, args in {
        "identify": ("u", {"a": 1}),
        "track": ("u", "E"),
        "alias": ("p", "u"),
        "group": ("u", "g"),
        "page": ("u", "cat", "name"),
        "screen": ("u", "cat", "name"),
    }.items():
        ok, message = getattr(client, call)(*args)
        assert ok is True and message["type"] == call


def test_missing_write_key_is_a_clear_error() -> None:
    with pytest.raises(AssertionError, match="write_key is required"):
        segment_lite.Client(None)


REFERENCE_STYLE_SCRIPT = """
import sys
from datetime import datetime, timezone
import segment.analytics as analytics

analytics.write_key = "script-key"
analytics.host = sys.argv[1]
analytics.debug = False
analytics.on_error = lambda error, items: print("error", error)

analytics.identify("019mr8mf4r", {"email": "john@example.com", "name": "John Smith", "friends": 30})
analytics.track("f4ca124298", "Signed Up", {"plan": "Enterprise"}, {"ip": "203.0.113.7"},
                datetime(2024, 1, 1, tzinfo=timezone.utc), None, {"All": False, "Mixpanel": True}, "fixed-id-1")
analytics.page("user-1", "Docs", "Python Library", {"url": "https://example.com/docs"})
analytics.screen("user-1", "Onboarding", "Welcome", {"step": 1})
analytics.group("user-1", "group-7", {"name": "Initech", "employees": 329})
analytics.alias("previous-id", "user-1")
analytics.track(anonymous_id="anon-1", event="Anonymous Thing")
analytics.flush()
analytics.shutdown()
"""


def test_a_reference_script_runs_unchanged_after_swapping_the_import(collector) -> None:
    source = REFERENCE_STYLE_SCRIPT.replace(
        "import segment.analytics as analytics", "import segment_lite as analytics"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source), collector.url],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=root),
    )
    assert result.returncode == 0, result.stderr
    assert "error" not in result.stdout
    stored = collector.messages()
    assert [m["type"] for m in stored] == ["identify", "track", "page", "screen", "group", "alias", "track"]
    signed_up = stored[1]
    assert signed_up["messageId"] == "fixed-id-1"
    assert signed_up["integrations"] == {"All": False, "Mixpanel": True}
    assert signed_up["context"]["ip"] == "203.0.113.7"
    assert signed_up["originalTimestamp"] == "2024-01-01T00:00:00.000+00:00"
