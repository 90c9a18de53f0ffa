"""Strict RFC 3339 parsing and the UTC minute/month arithmetic every bucket depends on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from minutemeter.domain.errors import InputError
from minutemeter.domain.timeutil import (
    epoch_seconds,
    floor_minute,
    format_instant,
    format_second,
    is_minute_aligned,
    month_of,
    parse_rfc3339,
)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
        microsecond: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


# --- parse_rfc3339: what it accepts -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-22T10:00:15Z", utc(2026, 11, 22, 10, 0, 15)),
        ("2026-11-22T10:00:15z", utc(2026, 11, 22, 10, 0, 15)),
        ("2026-11-22t10:00:15Z", utc(2026, 11, 22, 10, 0, 15)),
        ("2026-11-22 10:00:15Z", utc(2026, 11, 22, 10, 0, 15)),
        ("2026-11-22T10:00:15+00:00", utc(2026, 11, 22, 10, 0, 15)),
        ("2026-11-22T10:00:15-00:00", utc(2026, 11, 22, 10, 0, 15)),
        # offsets are converted to UTC, including half-hour and across midnight
        ("2026-11-22T10:00:15+05:30", utc(2026, 11, 22, 4, 30, 15)),
        ("2026-11-22T23:30:00-01:00", utc(2026, 11, 23, 0, 30, 0)),
        ("2026-03-01T00:30:00+01:00", utc(2026, 2, 28, 23, 30, 0)),
        # fractions: padded to microseconds, finer digits truncated
        ("2026-11-22T10:00:15.5Z", utc(2026, 11, 22, 10, 0, 15, 500_000)),
        ("2026-11-22T10:00:15.000001Z", utc(2026, 11, 22, 10, 0, 15, 1)),
        ("2026-11-22T10:00:15.123456789Z", utc(2026, 11, 22, 10, 0, 15, 123_456)),
    ],
)
def test_parse_accepts_rfc3339_and_returns_aware_utc(text: str, expected: datetime) -> None:
    parsed = parse_rfc3339(text)

    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


def test_nine_fraction_digits_never_round_into_the_next_minute() -> None:
    # GIVEN a sample taken a hair before 10:01
    parsed = parse_rfc3339("2026-11-22T10:00:59.9999999Z")

    # THEN it is truncated to the microsecond and stays in minute 10:00
    assert parsed == utc(2026, 11, 22, 10, 0, 59, 999_999)
    assert floor_minute(parsed) == utc(2026, 11, 22, 10, 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-31T23:59:60Z", utc(2026, 12, 31, 23, 59, 59, 999_999)),
        ("2026-12-31T23:59:60.5Z", utc(2026, 12, 31, 23, 59, 59, 999_999)),
        ("2026-07-01T05:29:60+05:30", utc(2026, 6, 30, 23, 59, 59, 999_999)),
    ],
)
def test_leap_second_stays_in_its_minute_month_and_year(text: str, expected: datetime) -> None:
    parsed = parse_rfc3339(text)

    assert parsed == expected
    assert floor_minute(parsed) == expected.replace(second=0, microsecond=0)
    assert month_of(parsed) == expected.strftime("%Y-%m")


# --- parse_rfc3339: what it rejects -------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-22",  # date only
        "2026-11-22T10:00:15",  # no zone
        "2026-11-22T10:00Z",  # no seconds
        "2026-11-22T10:00:15Z\n",  # trailing newline
        " 2026-11-22T10:00:15Z",  # leading space
        "2026-11-22T10:00:15.Z",  # empty fraction
        "2026-11-22T10:00:15+0530",  # offset without colon
        "2026-11-22T10:00:15 UTC",
        "\uff12\uff10\uff12\uff16-11-22T10:00:15Z",  # fullwidth digits
        "2026-11-22T1\u0660:00:15Z",  # arabic-indic zero
        "2026-13-01T10:00:15Z",  # month 13
        "2026-02-29T10:00:15Z",  # not a leap year
        "2026-11-22T24:00:00Z",
        "2026-11-22T10:60:00Z",
        "2026-11-22T10:00:61Z",
        "2026-11-22T10:00:15+24:00",
        "",
    ],
)
def test_parse_rejects_malformed_text_with_input_error(text: str) -> None:
    with pytest.raises(InputError):
        parse_rfc3339(text, what="taken_at")


@pytest.mark.parametrize(
    "value", [None, 1_700_000_000, 1.5, b"2026-11-22T10:00:15Z", utc(2026, 1, 1)]
)
def test_parse_rejects_non_strings_and_names_the_field(value: object) -> None:
    with pytest.raises(InputError, match="next_cursor"):
        parse_rfc3339(value, what="next_cursor")


@pytest.mark.parametrize("text", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_parse_out_of_range_after_offset_is_an_input_error(text: str) -> None:
    with pytest.raises(InputError):
        parse_rfc3339(text)


# --- minutes ------------------------------------------------------------------------------------


def test_floor_minute_keeps_59_999_in_its_minute_and_00_000_starts_the_next() -> None:
    assert floor_minute(utc(2026, 11, 22, 10, 0, 59, 999_000)) == utc(2026, 11, 22, 10, 0)
    assert floor_minute(utc(2026, 11, 22, 10, 0, 59, 999_999)) == utc(2026, 11, 22, 10, 0)
    assert floor_minute(utc(2026, 11, 22, 10, 1, 0, 0)) == utc(2026, 11, 22, 10, 1)


def test_floor_minute_converts_other_zones_to_utc_first() -> None:
    nepal = timezone(timedelta(hours=5, minutes=45))
    moment = datetime(2026, 11, 22, 10, 0, 30, tzinfo=nepal)

    floored = floor_minute(moment)

    assert floored == utc(2026, 11, 22, 4, 15)
    assert floored.tzinfo is UTC


def test_is_minute_aligned() -> None:
    assert is_minute_aligned(utc(2026, 11, 22, 10, 1))
    assert not is_minute_aligned(utc(2026, 11, 22, 10, 1, 0, 1))
    assert not is_minute_aligned(utc(2026, 11, 22, 10, 1, 1))


# --- months -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "month"),
    [
        (utc(2026, 1, 31, 23, 59, 59, 999_999), "2026-01"),
        (utc(2026, 2, 1, 0, 0), "2026-02"),
        (utc(2028, 2, 29, 12, 0), "2028-02"),
        (utc(2028, 2, 29, 23, 59, 59, 999_999), "2028-02"),
        (utc(2028, 3, 1, 0, 0), "2028-03"),
        (utc(2026, 12, 31, 23, 59, 59, 999_999), "2026-12"),
        (utc(2027, 1, 1, 0, 0), "2027-01"),
        # a local time already in February is still January in UTC
        (datetime(2026, 2, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))), "2026-01"),
    ],
)
def test_month_of_uses_the_utc_calendar_month(moment: datetime, month: str) -> None:
    assert month_of(moment) == month


def test_parse_then_month_of_at_month_end_boundary() -> None:
    assert month_of(parse_rfc3339("2026-01-31T23:59:59.999999999Z")) == "2026-01"
    assert month_of(parse_rfc3339("2026-02-01T00:00:00Z")) == "2026-02"


# --- formatting and naive datetimes -------------------------------------------------------------


def test_format_instant_is_fixed_width_utc_and_format_second_drops_fraction() -> None:
    moment = datetime(2026, 11, 22, 15, 30, 15, 42, tzinfo=timezone(timedelta(hours=5, minutes=30)))

    assert format_instant(moment) == "2026-11-22T10:00:15.000042Z"
    assert format_instant(utc(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05.000000Z"
    assert format_second(moment) == "2026-11-22T10:00:15Z"
    assert parse_rfc3339(format_instant(moment)) == moment


def test_epoch_seconds_truncates_the_fraction() -> None:
    assert epoch_seconds(utc(1970, 1, 1, 0, 1, 0, 999_999)) == 60


@pytest.mark.parametrize(
    "function", [floor_minute, month_of, format_instant, format_second, epoch_seconds]
)
def test_naive_datetimes_are_rejected(function: object) -> None:
    naive = datetime(2026, 11, 22, 10, 0)  # noqa: DTZ001 - the point of the test

    with pytest.raises(ValueError, match="naive"):
        function(naive)  # type: ignore[operator]
