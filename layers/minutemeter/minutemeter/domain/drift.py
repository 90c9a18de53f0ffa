"""Drift check domain: servers, leap seconds and smearing, interval selection.

Pure: every function takes ``now`` and the measurements; seconds everywhere (the report
converts to milliseconds). The NTP exchange arithmetic is in :mod:`minutemeter.domain.ntp_math`;
the verdict built from all this is in :mod:`minutemeter.domain.drift_assessment`.

Two time scales meet here. The Amazon Time Sync Service (``time.aws.com`` and the link-local
``169.254.169.123``) *smears* a leap second linearly over the 24 hours from noon to noon UTC
around it; public pool servers do not (they step). Inside that window the two may differ by up
to half a second, so the unsmeared servers' intervals are widened by the current smear
difference, and their disagreement with TSS is reported but not alarmed. The smeared scale is
the reference there: it is the one AWS services (and Lambda) keep.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from minutemeter.domain.errors import InputError

DEFAULT_NTP_PORT = 123
POOL_MIN_SPACING_SECONDS = 15.0
"""Never more than one request per 15 s to a pool server (the pool's own rule of courtesy)."""
SMEAR_HALF_WINDOW = timedelta(hours=12)


class Role(StrEnum):
    TSS = "tss"  # Amazon Time Sync Service over the internet: smeared
    NTP = "ntp"  # a configured NTP server (pool): not smeared
    LINK_LOCAL = "link-local"  # 169.254.169.123: probed and reported, never used in the verdict


SMEARED_ROLES = frozenset({Role.TSS, Role.LINK_LOCAL})


@dataclass(frozen=True)
class ServerSpec:
    """A server as configured: ``host`` is a name or an IPv4 literal, ``port`` numeric."""

    host: str
    port: int
    role: Role

    @property
    def label(self) -> str:
        """How the server is named in reports: ``host``, or ``host:port`` off port 123."""
        return self.host if self.port == DEFAULT_NTP_PORT else f"{self.host}:{self.port}"


def parse_server(text: str, role: Role) -> ServerSpec:
    """``host`` or ``host:port`` (IPv4 or a name; the port is a number, never a service name)."""
    value = text.strip()
    host, sep, port_text = value.rpartition(":")
    if not sep:
        host, port_text = value, str(DEFAULT_NTP_PORT)
    if not host or any(c.isspace() or c in "[]/:" for c in host):
        raise InputError(f"not a server (host[:port], IPv4 or a name): {text!r}")
    if not port_text.isascii() or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise InputError(f"server port must be a number in 1..65535: {text!r}")
    return ServerSpec(host, int(port_text), role)


def is_pool_server(role: Role, address: str) -> bool:
    """An NTP server somebody else runs: any ``ntp`` server that is not on loopback."""
    if role is not Role.NTP:
        return False
    try:
        return not ipaddress.ip_address(address).is_loopback
    except ValueError:
        return True


def sample_spacing(role: Role, address: str, requested: float) -> float:
    """Seconds between two requests to one server: ``requested``, but at least
    :data:`POOL_MIN_SPACING_SECONDS` for a pool server."""
    if is_pool_server(role, address):
        return max(requested, POOL_MIN_SPACING_SECONDS)
    return max(0.0, requested)


# -- leap seconds ---------------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class LeapSecond:
    """A leap second at the end of the UTC day ``day``: ``delta`` +1 (23:59:60 inserted) or -1
    (23:59:59 deleted)."""

    day: date
    delta: int = 1

    @property
    def instant(self) -> datetime:
        """The first instant after the leap: midnight UTC following ``day``."""
        return datetime.combine(self.day + timedelta(days=1), time(), tzinfo=UTC)

    @property
    def smear_start(self) -> datetime:
        return self.instant - SMEAR_HALF_WINDOW

    @property
    def smear_end(self) -> datetime:
        return self.instant + SMEAR_HALF_WINDOW

    def __str__(self) -> str:
        return f"{self.day.isoformat()}:{self.delta:+d}"


_HISTORICAL_LEAP_DAYS = (
    "1972-06-30", "1972-12-31", "1973-12-31", "1974-12-31", "1975-12-31", "1976-12-31",
    "1977-12-31", "1978-12-31", "1979-12-31", "1981-06-30", "1982-06-30", "1983-06-30",
    "1985-06-30", "1987-12-31", "1989-12-31", "1990-12-31", "1992-06-30", "1993-06-30",
    "1994-06-30", "1995-12-31", "1997-06-30", "1998-12-31", "2005-12-31", "2008-12-31",
    "2012-06-30", "2015-06-30", "2016-12-31",
)  # fmt: skip
LEAP_SECONDS: tuple[LeapSecond, ...] = tuple(
    LeapSecond(date.fromisoformat(day)) for day in _HISTORICAL_LEAP_DAYS
)
"""Every leap second so far (all inserted; TAI - UTC went from 10 s to 37 s). Add announced
ones with :func:`with_leap_seconds` (IERS Bulletin C, twice a year)."""


def parse_leap_second(text: str) -> LeapSecond:
    """``YYYY-MM-DD`` or ``YYYY-MM-DD:+1`` / ``:-1``; the day must be the last of its month."""
    day_text, _, delta_text = text.strip().partition(":")
    try:
        day = date.fromisoformat(day_text)
    except ValueError as exc:
        raise InputError(f"not a leap second day: {text!r}") from exc
    if delta_text not in {"", "+1", "1", "-1"}:
        raise InputError(f"a leap second is +1 or -1: {text!r}")
    if (day + timedelta(days=1)).day != 1:
        raise InputError(f"a leap second ends a month, {day} is not a month's last day")
    return LeapSecond(day, -1 if delta_text == "-1" else 1)


def with_leap_seconds(
    extra: Iterable[LeapSecond], table: Sequence[LeapSecond] = LEAP_SECONDS
) -> tuple[LeapSecond, ...]:
    """``table`` plus ``extra``, sorted, one entry per day."""
    by_day = {leap.day: leap for leap in table}
    by_day.update({leap.day: leap for leap in extra})
    return tuple(sorted(by_day.values()))


def announced_leap(now: datetime, leap_indicator: int) -> LeapSecond | None:
    """The leap second a server's leap indicator announces (1: insert, 2: delete), or None.

    RFC 5905 reads LI as "at the end of the current day". Leap seconds only ever end a month,
    and servers (ntpd) raise LI up to a month ahead, so the announced leap is placed at the end
    of the current UTC month: on that month's last day it is the current day's end, and an early
    announcement cannot open a smear window on the wrong day (chrony, likewise, only accepts an
    announcement on the last day of June or December).
    """
    if leap_indicator not in (1, 2):
        return None
    today = now.astimezone(UTC).date()
    first_of_next = (today.replace(day=28) + timedelta(days=4)).replace(day=1)
    return LeapSecond(first_of_next - timedelta(days=1), 1 if leap_indicator == 1 else -1)


def leap_in_window(now: datetime, leaps: Iterable[LeapSecond]) -> LeapSecond | None:
    """The leap second whose smear window (noon to noon UTC around it) holds ``now``."""
    for leap in leaps:
        if leap.smear_start <= now < leap.smear_end:
            return leap
    return None


def smear_difference(now: datetime, leap: LeapSecond) -> float:
    """Seconds by which a smeared clock (TSS) differs from an unsmeared one (pool) at ``now``:
    smeared minus unsmeared. 0 outside the window; for an inserted second it falls linearly to
    -0.5 s at the leap, jumps to +0.5 s as the unsmeared clock steps back, and returns to 0 at
    noon."""
    if not leap.smear_start <= now < leap.smear_end:
        return 0.0
    fraction = (now - leap.smear_start) / (2 * SMEAR_HALF_WINDOW)
    if now < leap.instant:
        return -leap.delta * fraction
    return leap.delta * (1.0 - fraction)


# -- selection (Marzullo) -------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """A server's claim: the true offset lies in ``offset ± bound`` (seconds)."""

    name: str
    offset: float
    bound: float

    @property
    def low(self) -> float:
        return self.offset - self.bound

    @property
    def high(self) -> float:
        return self.offset + self.bound


@dataclass(frozen=True)
class Selection:
    """The largest set of mutually overlapping intervals (``truechimers``), the others
    (``falsetickers``), and their common part ``[low, high]``.

    ``majority``: the truechimers are more than half of the candidates and no other set of the
    same size exists. Without it (``ambiguous`` when tied) nothing can be said about which
    servers are wrong, and both name lists are empty.
    """

    truechimers: tuple[str, ...]
    falsetickers: tuple[str, ...]
    low: float | None
    high: float | None
    majority: bool
    ambiguous: bool = False

    @property
    def offset(self) -> float | None:
        return None if self.low is None or self.high is None else (self.low + self.high) / 2

    @property
    def bound(self) -> float | None:
        return None if self.low is None or self.high is None else (self.high - self.low) / 2


def select_truechimers(intervals: Sequence[Interval]) -> Selection:
    """Marzullo's algorithm: intervals overlap pairwise exactly when they share a point, and the
    most-covered points include some interval's low end, so each low end is tried."""
    best: list[frozenset[int]] = []
    for point in sorted({i.low for i in intervals}):
        members = frozenset(k for k, i in enumerate(intervals) if i.low <= point <= i.high)
        if not best or len(members) > len(best[0]):
            best = [members]
        elif len(members) == len(best[0]) and members not in best:
            best.append(members)
    if not best:
        return Selection((), (), None, None, majority=False)
    if len(best) > 1:
        return Selection((), (), None, None, majority=False, ambiguous=True)
    chosen = best[0]
    return Selection(
        truechimers=tuple(i.name for k, i in enumerate(intervals) if k in chosen),
        falsetickers=tuple(i.name for k, i in enumerate(intervals) if k not in chosen),
        low=max(intervals[k].low for k in chosen),
        high=min(intervals[k].high for k in chosen),
        majority=2 * len(chosen) > len(intervals),
    )
