"""Timestamp parsing: ISO-8601 forms, epoch seconds/ms/µs/ns by magnitude, time zones for naive values."""

from __future__ import annotations

import datetime

import pytest

from segment_lite.importer import (
    ImportConfigError,
    RowOptions,
    TimestampError,
    parse_timestamp,
    resolve_timezone,
)

UTC = datetime.timezone.utc
PARIS = resolve_timezone("Europe/Paris")


def at(*args: int) -> datetime.datetime:
    return datetime.datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-03-01T12:00:00Z", at(2024, 3, 1, 12)),
        ("2024-03-01T12:00:00.123Z", at(2024, 3, 1, 12, 0, 0, 123000)),
        ("2024-03-01T12:00:00+02:00", at(2024, 3, 1, 10)),
        ("2024-03-01 12:00:00-05:30", at(2024, 3, 1, 17, 30)),
        ("2024-03-01T12:00:00", at(2024, 3, 1, 12)),
        ("2024-03-01", at(2024, 3, 1)),
        ("20240301T120000Z", at(2024, 3, 1, 12)),
        ("2024-03-01T12:00:00.123456789Z", at(2024, 3, 1, 12, 0, 0, 123456)),
    ],
)
def test_iso_8601_forms(value: str, expected: datetime.datetime) -> None:
    assert parse_timestamp(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1709294400, at(2024, 3, 1, 12)),  # seconds
        ("1709294400", at(2024, 3, 1, 12)),
        (1709294400.5, at(2024, 3, 1, 12, 0, 0, 500000)),
        ("1709294400.25", at(2024, 3, 1, 12, 0, 0, 250000)),
        (1709294400123, at(2024, 3, 1, 12, 0, 0, 123000)),  # milliseconds
        ("1709294400123", at(2024, 3, 1, 12, 0, 0, 123000)),
        (1709294400123456, at(2024, 3, 1, 12, 0, 0, 123000)),  # microseconds, kept to the ms
        (1709294400123456789, at(2024, 3, 1, 12, 0, 0, 123000)),  # nanoseconds
        (0, at(1970, 1, 1)),
        (-86400, at(1969, 12, 31)),
        # the magnitude rule's edges: below 1e11 is seconds, from 1e11 milliseconds
        (99_999_999_999, at(5138, 11, 16, 9, 46, 39)),
        (100_000_000_000, at(1973, 3, 3, 9, 46, 40)),
    ],
)
def test_epoch_numbers_seconds_or_milliseconds_by_magnitude(
    value: object, expected: datetime.datetime
) -> None:
    assert parse_timestamp(value) == expected


def test_naive_values_are_read_in_the_given_zone() -> None:
    # Paris is UTC+1 in winter, UTC+2 in summer.
    assert parse_timestamp("2024-01-15 09:00:00", PARIS) == at(2024, 1, 15, 8)
    assert parse_timestamp("2024-07-15T09:00:00", PARIS) == at(2024, 7, 15, 7)
    assert parse_timestamp("2024-07-15", PARIS) == at(2024, 7, 14, 22)
    assert parse_timestamp(datetime.datetime(2024, 7, 15, 9), PARIS) == at(2024, 7, 15, 7)
    assert parse_timestamp(datetime.date(2024, 1, 15), PARIS) == at(2024, 1, 14, 23)


def test_values_with_an_offset_and_epochs_ignore_the_zone() -> None:
    assert parse_timestamp("2024-07-15T09:00:00Z", PARIS) == at(2024, 7, 15, 9)
    assert parse_timestamp("2024-07-15T09:00:00+00:00", PARIS) == at(2024, 7, 15, 9)
    assert parse_timestamp(1709294400, PARIS) == at(2024, 3, 1, 12)
    aware = datetime.datetime(2024, 7, 15, 9, tzinfo=datetime.timezone(datetime.timedelta(hours=3)))
    assert parse_timestamp(aware, PARIS) == at(2024, 7, 15, 6)


@pytest.mark.parametrize(
    "value", ["", "   ", "yesterday", "2024-13-01", "12:00", True, None, [2024], float("nan")]
)
def test_unusable_values_raise(value: object) -> None:
    with pytest.raises(TimestampError):
        parse_timestamp(value)


def test_time_zone_names() -> None:
    assert resolve_timezone(None) is UTC
    assert resolve_timezone("UTC") is UTC
    assert resolve_timezone("America/New_York").utcoffset(
        datetime.datetime(2024, 1, 1)
    ) == datetime.timedelta(hours=-5)
    with pytest.raises(TimestampError):
        resolve_timezone("Mars/Olympus_Mons")
    with pytest.raises(ImportConfigError, match="unknown time zone"):
        RowOptions(timezone="Mars/Olympus_Mons")
