"""Consent helpers (segment_lite.privacy): OneTrust's cookie parsed, and "Segment Consent Preference Updated" as sent."""

from __future__ import annotations

from typing import Any, Optional

import pytest

import segment_lite
from segment_lite.errors import ValidationError
from segment_lite.integrations.pageview import RequestInfo
from segment_lite.privacy import (
    CONSENT_UPDATED_EVENT,
    onetrust_consent,
    parse_onetrust_cookie,
    send_consent_updated,
)
from segment_lite.testing import RecordingClient

COOKIE = (
    "isGpcEnabled=0&datestamp=Mon+Dec+07+2026+10%3A00%3A00+GMT%2B0100&version=202409.1.0"
    "&groups=C0001%3A1%2CC0002%3A0%2CC0003%3A1%2CC0004%3A0&hosts=&AwaitingReconsent=false"
)


@pytest.mark.parametrize(
    ("value", "mapping", "expected"),
    [
        (COOKIE, None, {"C0001": True, "C0002": False, "C0003": True, "C0004": False}),
        (
            COOKIE,
            {"C0001": "Necessary", "C0002": "Analytics", "C0004": "Advertising"},
            {"Necessary": True, "Analytics": False, "C0003": True, "Advertising": False},
        ),
        ("groups=C0001:1,C0002:0", None, {"C0001": True, "C0002": False}),  # already decoded
        ("groups=C0001%3A1%2Cjunk%2CC0002%3Ax%2C%3A1", None, {"C0001": True}),  # bad entries skipped
        ("isGpcEnabled=0&hosts=", None, None),  # no groups yet
        ("groups=", None, None),
        ("", None, None),
        (None, None, None),
    ],
)
def test_parse_onetrust_cookie(
    value: Optional[str], mapping: Optional[dict[str, str]], expected: Optional[dict[str, bool]]
) -> None:
    assert parse_onetrust_cookie(value, mapping) == expected


def test_onetrust_consent_reads_the_requests_cookie() -> None:
    read = onetrust_consent({"C0002": "Analytics"})
    info = RequestInfo("GET", "http", "h", "/", cookies={"OptanonConsent": "groups=C0002%3A1"})
    assert read(info) == {"Analytics": True}
    assert read(RequestInfo("GET", "http", "h", "/")) is None
    assert onetrust_consent(cookie_name="Custom")(
        RequestInfo("GET", "http", "h", "/", cookies={"Custom": "groups=C0001%3A0"})
    ) == {"C0001": False}
    with pytest.raises(ValidationError, match="group_categories"):
        onetrust_consent(["C0001"])  # type: ignore[arg-type]


def test_send_consent_updated_sends_the_event_segment_expects() -> None:
    client = RecordingClient(consent={"Analytics": True, "Advertising": True})
    try:
        with segment_lite.context(anonymous_id="anon-9"):
            ok, _ = send_consent_updated(client, {"Analytics": True, "Advertising": False}, user_id="u-9")
    finally:
        client.shutdown()
    assert ok is True
    [message] = client.messages
    assert message["type"] == "track" and message["event"] == CONSENT_UPDATED_EVENT
    assert (message["userId"], message["anonymousId"]) == ("u-9", "anon-9")
    # the new preferences, not the ones the client or a context would stamp
    assert message["context"]["consent"] == {"categoryPreferences": {"Analytics": True, "Advertising": False}}


def test_send_consent_updated_refuses_preferences_that_are_not_booleans() -> None:
    client: Any = RecordingClient()
    try:
        with pytest.raises(ValidationError) as caught:
            send_consent_updated(client, {"Analytics": "yes"}, user_id="u")
    finally:
        client.shutdown()
    assert caught.value.path == "preferences.Analytics"
    assert client.messages == []
