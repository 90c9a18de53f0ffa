"""NTP arithmetic: one request/reply exchange turned into an offset, a delay and an error bound.

Pure: the adapter hands over a :class:`NtpReply` (the server's fields plus our own two local
timestamps), and everything here is a function of it. Seconds everywhere (floats); the report
converts to milliseconds.

The four timestamps of RFC 5905, section 8:

- ``t1``: local clock when the request left (Unix seconds, read from the ``Clock`` port);
- ``t2``: server clock when the request arrived (the reply's *receive* timestamp);
- ``t3``: server clock when the reply left (the reply's *transmit* timestamp);
- ``t4``: local clock when the reply arrived, computed as ``t1`` plus the *monotonic* time that
  elapsed, so that a step of the wall clock during the exchange cannot corrupt the delay.

``offset = ((t2 - t1) + (t3 - t4)) / 2`` is the server clock minus the local clock (positive:
we are behind). ``delay = (t4 - t1) - (t3 - t2)`` is the round trip without the server's own
processing time. Whatever the split of the delay between the two directions, the true offset
differs from ``offset`` by at most ``delay / 2``: that is the first term of the error bound.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from minutemeter.domain.errors import MinutemeterError

NTP_UNIX_DELTA = 2_208_988_800
"""Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01)."""
NTP_ERA_SECONDS = 2**32
"""NTP timestamps count seconds modulo 2**32: era 0 ends in February 2036."""
MAX_DELAY_SECONDS = 1.0
"""Replies whose round-trip delay is not in ``[0, MAX_DELAY_SECONDS)`` are rejected."""
PHI = 15e-6
"""RFC 5905's frequency tolerance (15 PPM): how fast an old sample's error grows, s/s."""

KISS_STOP = frozenset({"DENY", "RSTR"})
"""Kiss codes that mean: stop asking this server (RFC 5905, section 7.4)."""
KISS_SLOW_DOWN = frozenset({"RATE"})
"""Kiss codes that mean: ask this server less often."""


# -- errors the NTP adapter raises (kept here so the service need not import the adapter) ---------
class NtpError(MinutemeterError):
    """One NTP exchange failed; ``server`` is the host or address it was meant for."""

    def __init__(self, message: str, *, server: str) -> None:
        super().__init__(f"{server}: {message}")
        self.server = server


class NtpResolveError(NtpError):
    """The host name has no IPv4 address (or the lookup failed)."""


class NtpTimeoutError(NtpError):
    """No acceptable reply arrived within the timeout."""

    def __init__(self, message: str, *, server: str, timeout: float) -> None:
        super().__init__(message, server=server)
        self.timeout = timeout


class NtpOriginMismatchError(NtpTimeoutError):
    """Only replies whose origin timestamp did not echo our request arrived before the timeout
    (stale, spoofed or broken): none of them is an answer to *this* request."""

    def __init__(self, message: str, *, server: str, timeout: float, bogus: int) -> None:
        super().__init__(message, server=server, timeout=timeout)
        self.bogus = bogus


class NtpTransportError(NtpError):
    """The socket failed (port unreachable, network unreachable, ...)."""


# -- one exchange ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class NtpReply:
    """A server's reply to our request, with our own timestamps of the exchange.

    ``receive``/``transmit`` are the server's timestamps as NTP seconds (since 1900, modulo
    2**32, ``0.0`` when the field was zero on the wire); ``t1``/``t4`` are local Unix seconds.
    ``precision`` is the server's log2 of seconds (-20 is about a microsecond); ``root_delay``
    and ``root_dispersion`` are seconds; ``ref_id`` is the raw 32-bit reference id (the kiss code
    when ``stratum`` is 0).
    """

    leap: int
    version: int
    mode: int
    stratum: int
    poll: int
    precision: int
    root_delay: float
    root_dispersion: float
    ref_id: int
    receive: float
    transmit: float
    t1: float
    t4: float

    @property
    def kiss_code(self) -> str:
        """The reference id as four ASCII characters (NULs dropped, others shown as ``?``)."""
        raw = self.ref_id.to_bytes(4, "big")
        return "".join(chr(b) if 32 < b < 127 else "?" for b in raw if b != 0)


class RejectReason(StrEnum):
    KISS_OF_DEATH = "kiss_of_death"
    UNSYNCHRONISED = "unsynchronised"
    BAD_MODE = "bad_mode"
    BAD_VERSION = "bad_version"
    ZERO_TIMESTAMP = "zero_timestamp"
    BAD_DELAY = "bad_delay"


class KissAction(StrEnum):
    STOP = "stop"  # DENY, RSTR: never ask this server again in this run
    SLOW_DOWN = "slow_down"  # RATE: double the spacing to this server
    DISCARD = "discard"  # any other code: drop the reply, carry on


@dataclass(frozen=True)
class Rejection:
    """Why a reply was not used; ``kiss_code`` only for Kiss-o'-Death."""

    reason: RejectReason
    detail: str
    kiss_code: str | None = None

    @property
    def kiss_action(self) -> KissAction | None:
        return kiss_action(self.kiss_code) if self.kiss_code is not None else None


@dataclass(frozen=True)
class NtpSample:
    """A valid measurement of the local clock against one NTP server. Seconds; ``precision`` is
    the server's, already ``2**p`` seconds; ``t1`` the local Unix time at which it was taken.
    (Not the billing domain's counter :class:`minutemeter.domain.model.Sample`.)"""

    offset: float
    delay: float
    root_delay: float
    root_dispersion: float
    precision: float
    stratum: int
    leap: int
    t1: float

    def error_bound(self, age: float = 0.0) -> float:
        """Half-width (seconds) of the interval around :attr:`offset` that holds the true offset
        of the local clock from UTC as the server's reference keeps it.

        - ``delay / 2``: the request and the reply may have taken the whole round trip between
          them in any split; the offset formula assumes an even one.
        - ``root_delay / 2``: the same uncertainty, accumulated along the server's own path to
          its reference clock.
        - ``root_dispersion``: the error the server itself declares (its reference's precision,
          the dispersion accumulated since its last update, ...).
        - ``precision``: the server's clock reading resolution (``2**precision``).
        - ``PHI * age``: our clock may have wandered at up to 15 PPM since the sample was taken;
          ``age`` (seconds, from the monotonic clock) is 0 for a fresh sample.
        """
        return (
            self.delay / 2
            + self.root_delay / 2
            + self.root_dispersion
            + self.precision
            + PHI * max(0.0, age)
        )


def unix_to_ntp(unix_seconds: float) -> float:
    """Unix seconds as an NTP timestamp value (seconds since 1900, modulo 2**32)."""
    return (unix_seconds + NTP_UNIX_DELTA) % NTP_ERA_SECONDS


def ntp_to_unix(ntp_seconds: float, near_unix: float) -> float:
    """The Unix time of an NTP timestamp, taking the NTP era closest to ``near_unix``.

    NTP timestamps wrap every 2**32 seconds (February 2036); as RFC 5905 does, the difference
    to a nearby known time is taken modulo 2**32, so the result is right in any era as long as
    the two clocks are within 68 years of each other.
    """
    diff = (ntp_seconds - unix_to_ntp(near_unix)) % NTP_ERA_SECONDS
    if diff >= NTP_ERA_SECONDS / 2:
        diff -= NTP_ERA_SECONDS
    return near_unix + diff


def offset_and_delay(t1: float, t2: float, t3: float, t4: float) -> tuple[float, float]:
    """``(offset, delay)`` in seconds from the four timestamps (all on one time axis)."""
    return ((t2 - t1) + (t3 - t4)) / 2, (t4 - t1) - (t3 - t2)


def kiss_action(code: str) -> KissAction:
    """What a Kiss-o'-Death code asks of us."""
    if code in KISS_STOP:
        return KissAction.STOP
    if code in KISS_SLOW_DOWN:
        return KissAction.SLOW_DOWN
    return KissAction.DISCARD


def assess_reply(reply: NtpReply) -> NtpSample | Rejection:
    """Check a reply (the adapter already checked that its origin echoes our request) and turn
    it into a :class:`NtpSample`, or say why it must not be used.

    In order: mode 4 (server) only; version 1..4; stratum 0 is a Kiss-o'-Death carrying its
    code; leap indicator 3 or stratum 16 and above is an unsynchronised server; a zero receive or
    transmit timestamp is no time at all; the delay must be in ``[0, 1 s)``.
    """
    if reply.mode != 4:
        return Rejection(RejectReason.BAD_MODE, f"mode {reply.mode}, not 4 (server)")
    if not 1 <= reply.version <= 4:
        return Rejection(RejectReason.BAD_VERSION, f"version {reply.version}")
    if reply.stratum == 0:
        code = reply.kiss_code
        return Rejection(RejectReason.KISS_OF_DEATH, f"kiss-o'-death {code}", kiss_code=code)
    if reply.leap == 3 or reply.stratum >= 16:
        return Rejection(
            RejectReason.UNSYNCHRONISED,
            f"unsynchronised (leap {reply.leap}, stratum {reply.stratum})",
        )
    if reply.transmit == 0.0 or reply.receive == 0.0:
        field = "transmit" if reply.transmit == 0.0 else "receive"
        return Rejection(RejectReason.ZERO_TIMESTAMP, f"zero {field} timestamp")
    t2 = ntp_to_unix(reply.receive, reply.t1)
    t3 = ntp_to_unix(reply.transmit, reply.t1)
    offset, delay = offset_and_delay(reply.t1, t2, t3, reply.t4)
    if not (0.0 <= delay < MAX_DELAY_SECONDS) or not math.isfinite(offset):
        return Rejection(RejectReason.BAD_DELAY, f"delay {delay * 1000:.3f} ms not in [0, 1000)")
    return NtpSample(
        offset=offset,
        delay=delay,
        root_delay=reply.root_delay,
        root_dispersion=reply.root_dispersion,
        precision=2.0**reply.precision,
        stratum=reply.stratum,
        leap=reply.leap,
        t1=reply.t1,
    )


def best_sample(samples: Iterable[NtpSample]) -> NtpSample | None:
    """The sample with the smallest delay (the least asymmetry can hide in it); ``None`` when
    there is none. Ties go to the earliest."""
    best: NtpSample | None = None
    for sample in samples:
        if best is None or sample.delay < best.delay:
            best = sample
    return best
