"""UTC instants: strict RFC 3339 parsing, fixed-width formatting, minute and month arithmetic.

Every instant in minutemeter is an aware ``datetime`` in UTC. Stored instants use fixed-width
strings so that DynamoDB compares them correctly as strings.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from minutemeter.domain.errors import InputError

_RFC3339 = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})"
    r"(?:\.(?P<frac>\d+))?(?P<tz>[Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,
)

MINUTE = timedelta(minutes=1)


def parse_rfc3339(text: object, *, what: str = "time") -> datetime:
    """Parse an RFC 3339 date-time into an aware UTC ``datetime``.

    Fractions finer than a microsecond are truncated (never rounded up into the next minute); a
    leap second ``:60`` becomes ``:59.999999`` of the same minute. Raises :class:`InputError`.
    """
    if not isinstance(text, str):
        raise InputError(f"{what} must be an RFC 3339 string, got {type(text).__name__}")
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise InputError(f"{what} is not an RFC 3339 date-time: {text!r}")
    second = int(match["s"])
    micro = int((match["frac"] or "0")[:6].ljust(6, "0"))
    if second == 60:
        second, micro = 59, 999_999
    tz = match["tz"].upper()
    offset = "+00:00" if tz == "Z" else tz
    try:
        parsed = datetime.fromisoformat(
            f"{match['date']}T{match['h']}:{match['m']}:{second:02d}.{micro:06d}{offset}"
        )
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:  # overflow: a valid local time beyond year 9999
        raise InputError(f"{what} is not a valid date-time: {text!r}") from exc


def format_instant(moment: datetime) -> str:
    """Fixed-width RFC 3339 with microseconds: ``2026-11-22T10:00:15.000000Z``."""
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_second(moment: datetime) -> str:
    """RFC 3339 at second precision: ``2026-11-22T10:00:00Z`` (sub-second part dropped)."""
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def floor_minute(moment: datetime) -> datetime:
    """The start of the UTC minute containing ``moment`` (``:59.999`` stays, ``:00.000`` starts)."""
    return _utc(moment).replace(second=0, microsecond=0)


def is_minute_aligned(moment: datetime) -> bool:
    return moment.second == 0 and moment.microsecond == 0


def month_of(moment: datetime) -> str:
    """The calendar month (UTC) of ``moment`` as ``YYYY-MM``; quota resets at its start."""
    return _utc(moment).strftime("%Y-%m")


def parse_month(text: str, *, what: str = "month") -> str:
    """``YYYY-MM`` (a UTC calendar month, years 2000-8999); raises :class:`InputError`."""
    year, dash, month = text[:4], text[4:5], text[5:]
    if not (len(text) == 7 and dash == "-" and year.isdigit() and month.isdigit()
            and 2000 <= int(year) <= 8999 and 1 <= int(month) <= 12):
        raise InputError(f"{what} must be YYYY-MM (a month between 2000-01 and 8999-12), "
                         f"got {text[:20]!r}")
    return text


def epoch_seconds(moment: datetime) -> int:
    return int(_utc(moment).timestamp())


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: minutemeter only handles aware UTC instants")
    return moment.astimezone(UTC)
