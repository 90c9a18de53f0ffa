"""Lease arithmetic: pure functions of clocks and settings (the store enforces them atomically).

A lease is held until ``lease_until`` (the holder's wall clock at acquisition plus the lease
length). Clocks of two runners differ by up to the drift bound, so:

- a taker may take over only when ``now - margin > lease_until`` (its own wall clock);
- a holder stops taking new work ``margin`` before its lease ends, measured on its monotonic
  clock from the moment it sent the acquire or renew request.

Both margins together tolerate a clock difference of up to ``2 * margin`` between two runners;
fencing tokens make a larger one safe anyway (a stale holder's commit is rejected).
"""

from __future__ import annotations

from datetime import datetime, timedelta


def lease_until(now: datetime, lease_seconds: int) -> datetime:
    """When a lease taken or renewed at ``now`` ends."""
    return now + timedelta(seconds=lease_seconds)


def takeover_cutoff(now: datetime, margin_seconds: float) -> datetime:
    """A lease whose ``lease_until`` is before this instant may be taken over."""
    return now - timedelta(seconds=margin_seconds)


def may_take_over(current_until: datetime | None, now: datetime, margin_seconds: float) -> bool:
    """Free (never taken or released) or expired by more than the margin."""
    return current_until is None or current_until < takeover_cutoff(now, margin_seconds)


def must_stop(valid_until_monotonic: float, monotonic_now: float, margin_seconds: float) -> bool:
    """True once less than ``margin`` of the lease is left, by the holder's monotonic clock."""
    return monotonic_now >= valid_until_monotonic - margin_seconds


def heartbeat_interval(lease_seconds: int) -> float:
    """Renew three times per lease, so that two failed renewals in a row are survivable."""
    return max(1.0, lease_seconds / 3.0)
