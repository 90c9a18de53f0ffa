"""The clock guard's decisions at their edges (domain/clock_guard.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from minutemeter.domain.clock_guard import (
    ClockGuardPolicy,
    decide_clock_guard,
    takeover_margin_seconds,
)
from minutemeter.domain.model import ClockGuardAction, ClockVerdict, SourceConfig

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
POLICY = ClockGuardPolicy(required=True, max_age=timedelta(minutes=15),
                          fallback_error=timedelta(seconds=30))
SOURCE = SourceConfig("s1", "http://127.0.0.1:1", NOW, clock_margin_ms=1000)


def verdict(offset_ms: str, bound_ms: str, age: timedelta = timedelta(minutes=1),
            status: str = "ok") -> ClockVerdict:
    return ClockVerdict(NOW - age, status, Decimal(offset_ms), Decimal(bound_ms), 3)


def test_a_clock_within_the_margin_changes_nothing() -> None:
    # |offset| + bound = 400 + 600 = 1000 ms: exactly the margin
    decision = decide_clock_guard(SOURCE, verdict("-400", "600"), NOW, POLICY)
    assert (decision.action, decision.extra_lag, decision.error_ms) == (
        "none", timedelta(0), Decimal(1000))


def test_beyond_the_margin_the_lag_widens_by_the_whole_error_rounded_up() -> None:
    decision = decide_clock_guard(SOURCE, verdict("-400", "601"), NOW, POLICY)
    assert (decision.action, decision.extra_lag) == ("widen", timedelta(seconds=2))
    big = decide_clock_guard(SOURCE, verdict("2500", "300"), NOW, POLICY)
    assert big.extra_lag == timedelta(seconds=3)


def test_a_pausing_source_pauses_instead() -> None:
    source = SourceConfig("s1", "http://127.0.0.1:1", NOW, clock_guard=ClockGuardAction.PAUSE)
    decision = decide_clock_guard(source, verdict("0", "1500"), NOW, POLICY)
    assert decision.pause and decision.extra_lag == timedelta(0)
    assert decision.to_json()["action"] == "pause"


@pytest.mark.parametrize(
    "stale",
    [verdict("0", "1", age=timedelta(minutes=15, seconds=1)), verdict("0", "1", status="unknown"),
     None],
)
def test_an_old_unknown_or_missing_verdict_assumes_the_fallback_error(
    stale: ClockVerdict | None,
) -> None:
    decision = decide_clock_guard(SOURCE, stale, NOW, POLICY)
    assert (decision.action, decision.extra_lag, decision.error_ms) == (
        "widen", timedelta(seconds=30), Decimal(30000))


def test_a_verdict_exactly_max_age_old_is_still_trusted() -> None:
    decision = decide_clock_guard(SOURCE, verdict("0", "1", age=timedelta(minutes=15)), NOW, POLICY)
    assert decision.action == "none"


def test_without_the_requirement_a_missing_verdict_is_not_acted_on() -> None:
    relaxed = ClockGuardPolicy(required=False, max_age=POLICY.max_age,
                               fallback_error=POLICY.fallback_error)
    assert decide_clock_guard(SOURCE, None, NOW, relaxed).action == "none"
    # but a verdict that exists is always honoured
    assert decide_clock_guard(SOURCE, verdict("0", "5000"), NOW, relaxed).action == "widen"


def test_lease_takeover_waits_for_the_clock_error_too() -> None:
    assert takeover_margin_seconds(2.0, None) == 2.0
    assert takeover_margin_seconds(2.0, verdict("100", "200")) == 2.0
    assert takeover_margin_seconds(2.0, verdict("-3000", "500")) == 3.5
