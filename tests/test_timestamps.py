"""segment_lite.timestamps: the one place timestamps are read and written."""

from __future__ import annotations

import datetime

import pytest

from segment_lite import ValidationError
from segment_lite.timestamps import (
    LOCAL_TIME_WINDOW_S,
    TimestampError,
    format_timestamp,
    format_utc,
    guess_timezone,
    parse_api_timestamp,
    parse_iso,
    parse_timestamp,
)

UTC = datetime.timezone.utc


def at(*parts: int) -> datetime.datetime:
    return datetime.datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:00:00Z", at(2024, 5, 1, 12)),
        ("2024-05-01t12:00:00.5z", at(2024, 5, 1, 12, 0, 0, 500000)),
        ("2024-05-01T14:00:00+02:00", at(2024, 5, 1, 12)),
        ("2024-05-01T07:30:00-0430", at(2024, 5, 1, 12)),
        ("2024-05-01T13:00:00 +01", at(2024, 5, 1, 12)),
        ("2024-05-01 12:00", at(2024, 5, 1, 12)),
        ("2024-05-01", at(2024, 5, 1)),
    ],
)
def test_the_api_forms_are_read_in_utc(text: str, expected: datetime.datetime) -> None:
    assert parse_api_timestamp(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "yesterday",
        "2024-05-01T12",
        "20240501T120000Z",
        "2024-W18-3",
        "1714564800",
        "",
        "0001-01-01T00:00+01:00",
    ],
)
def test_other_forms_are_not_the_apis(text: str) -> None:
    with pytest.raises(TimestampError):
        parse_api_timestamp(text)


def test_parse_iso_reads_every_iso_form_and_keeps_the_offset() -> None:
    assert parse_iso("20240501T120000+0200").utcoffset() == datetime.timedelta(hours=2)
    assert parse_iso("2024-05-01T12:00", tz=datetime.timezone(datetime.timedelta(hours=-5))).hour == 12
    assert parse_timestamp("1714564800") == at(2024, 5, 1, 12)  # epochs only through parse_timestamp


def test_a_naive_datetime_near_now_is_local_and_an_old_one_utc() -> None:
    now = datetime.datetime.now()
    assert guess_timezone(now).utcoffset() == now.astimezone().utcoffset()
    future = now + datetime.timedelta(hours=1)
    assert guess_timezone(future).utcoffset() == future.astimezone().utcoffset()
    old = now - datetime.timedelta(seconds=LOCAL_TIME_WINDOW_S + 1)
    assert guess_timezone(old).tzinfo is UTC
    aware = at(2024, 1, 1)
    assert guess_timezone(aware) is aware


def test_format_timestamp_writes_what_the_reference_writes() -> None:
    plus_two = datetime.timezone(datetime.timedelta(hours=2))
    assert format_timestamp(datetime.datetime(2024, 1, 1, 12, 0, 0, 123456, plus_two)) == (
        "2024-01-01T12:00:00.123+02:00"
    )
    assert format_timestamp(datetime.date(2024, 2, 29)) == "2024-02-29T00:00:00.000+00:00"
    with pytest.raises(ValidationError) as refused:
        format_timestamp(3.5, "originalTimestamp")
    assert refused.value.path == "originalTimestamp"


def test_format_utc_uses_milliseconds_unless_finer_precision_is_needed() -> None:
    assert format_utc(at(2024, 5, 1, 12, 0, 0, 123000)) == "2024-05-01T12:00:00.123Z"
    assert format_utc(at(2024, 5, 1, 12, 0, 0, 123456)) == "2024-05-01T12:00:00.123456Z"
