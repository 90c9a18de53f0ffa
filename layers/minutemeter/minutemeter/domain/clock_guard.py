"""The clock guard: never bill a minute whose end this collector cannot be sure has passed.

A minute is complete when its end is at or before ``now - lag``. If this clock may be off by up
to ``e`` (``|offset| + bound`` of the latest drift verdict), ``now`` may really be ``now - e``,
so the lag must absorb ``e``. Each source states how much clock error its lag already absorbs
(``clock_margin_ms``). Beyond that, or when the verdict is too old to trust, the source either
widens its lag by the error (default) or pauses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from minutemeter.domain.model import ClockGuardAction, ClockVerdict, SourceConfig


@dataclass(frozen=True)
class ClockGuardPolicy:
    """Process-wide settings of the clock guard."""

    required: bool  # False: no verdict at all means no guard (a local run without drift checks)
    max_age: timedelta  # an older verdict is not trusted
    fallback_error: timedelta  # the error assumed when there is no trustworthy verdict


@dataclass(frozen=True)
class ClockGuardDecision:
    """What the clock guard decided for one collector run: ``extra_lag`` is added to the
    source's lag; ``pause``: bill nothing this run."""

    action: str  # "none", "widen" or "pause"
    extra_lag: timedelta
    error_ms: Decimal | None
    reason: str

    @property
    def pause(self) -> bool:
        return self.action == "pause"

    def to_json(self) -> dict[str, object]:
        return {
            "action": self.action,
            "extra_lag_seconds": int(self.extra_lag.total_seconds()),
            "clock_error_ms": str(self.error_ms) if self.error_ms is not None else None,
            "reason": self.reason,
        }


def clock_error_ms(verdict: ClockVerdict) -> Decimal:
    """How far this clock may be from true time: ``|offset| + bound`` (ms)."""
    return abs(verdict.offset_ms) + verdict.bound_ms


def decide_clock_guard(
    source: SourceConfig, verdict: ClockVerdict | None, now: datetime, policy: ClockGuardPolicy
) -> ClockGuardDecision:
    """What the collector must do about its clock before planning the window."""
    if verdict is None and not policy.required:
        return ClockGuardDecision(
            "none", timedelta(0), None, "no drift verdict; guard not required"
        )
    if verdict is None or now - verdict.measured_at > policy.max_age or verdict.status in {
        "unknown",
        "",
    }:
        why = "no drift verdict" if verdict is None else (
            f"drift verdict from {verdict.measured_at.isoformat()} is too old or unknown"
        )
        error_ms = Decimal(int(policy.fallback_error.total_seconds() * 1000))
        return _act(source, error_ms, f"{why}; assuming {error_ms} ms of clock error")
    error_ms = clock_error_ms(verdict)
    if error_ms <= source.clock_margin_ms:
        return ClockGuardDecision(
            "none", timedelta(0), error_ms, "clock within the source's margin"
        )
    return _act(source, error_ms, f"clock error {error_ms} ms exceeds margin "
                                  f"{source.clock_margin_ms} ms")


def _act(source: SourceConfig, error_ms: Decimal, reason: str) -> ClockGuardDecision:
    if source.clock_guard is ClockGuardAction.PAUSE:
        return ClockGuardDecision("pause", timedelta(0), error_ms, reason)
    seconds = math.ceil(error_ms / 1000)
    return ClockGuardDecision("widen", timedelta(seconds=seconds), error_ms, reason)


def takeover_margin_seconds(base_margin: float, verdict: ClockVerdict | None) -> float:
    """Lease takeover waits for expiry by more than the clock's error (and the base margin)."""
    if verdict is None:
        return base_margin
    return max(base_margin, float(clock_error_ms(verdict)) / 1000.0)
