"""The bucket-mark rules (domain/marks.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from minutemeter.domain.marks import mark_key, marks_after, may_exist
from minutemeter.domain.model import BillingProfile, CorrectionSpec, MinuteUsage, QuotaPlan

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
PROFILE = BillingProfile(0, Decimal("0.01"), Decimal(1), "v1")


def _usage(minute: int, node: str = "n1") -> MinuteUsage:
    at = T0 + timedelta(minutes=minute)
    return MinuteUsage(node, "acct", at, 5, 0, 5, at, at, 1)


def test_keys_of_different_pairs_never_collide() -> None:
    assert mark_key("a", "bc") != mark_key("ab", "c")
    assert mark_key("a\n", "b") != mark_key("a", "\nb")


def test_a_minute_after_the_mark_or_of_an_unmarked_pair_cannot_exist() -> None:
    marks = {mark_key("s", "n1"): T0 + timedelta(minutes=2)}
    assert may_exist(marks, "s", _usage(2))
    assert may_exist(marks, "s", _usage(1))
    assert not may_exist(marks, "s", _usage(3))
    assert not may_exist(marks, "s", _usage(1, node="n2"))
    assert not may_exist(marks, "other", _usage(1))


def test_without_marks_or_for_a_correction_everything_may_exist() -> None:
    correction = CorrectionSpec(_usage(9), 1, 1, 0, None, "r", "rc")
    assert may_exist(None, "s", _usage(9))
    assert may_exist({}, "s", correction)


def test_marks_move_to_the_latest_usage_and_never_back() -> None:
    plan = QuotaPlan("b", "s", "acct", "2026-11", 0, PROFILE, "r", T0,
                     (_usage(4), _usage(1, node="n2"), _usage(3)))
    before = {mark_key("s", "n1"): T0 + timedelta(minutes=7)}
    assert marks_after(before, plan) == {
        mark_key("s", "n1"): T0 + timedelta(minutes=7),
        mark_key("s", "n2"): T0 + timedelta(minutes=1),
    }
    assert marks_after({}, plan) == {
        mark_key("s", "n1"): T0 + timedelta(minutes=4),
        mark_key("s", "n2"): T0 + timedelta(minutes=1),
    }
    assert marks_after(None, plan) is None
