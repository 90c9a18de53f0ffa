"""Pricing and included-quota allocation: exact Decimal money, minute order, stable ledger ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, Inexact, Rounded

import pytest
from boto3.dynamodb.types import TypeSerializer
from hypothesis import given, settings
from hypothesis import strategies as st

from minutemeter.domain.errors import InputError
from minutemeter.domain.ids import (
    LEDGER_NAMESPACE,
    bucket_key,
    correction_variant,
    entry_id,
    ledger_id,
)
from minutemeter.domain.model import BillingProfile, BucketRef, MinuteUsage, QuotaPlan
from minutemeter.domain.money import (
    MAX_BILLABLE_BYTES,
    MULTIPLIER_DIGITS,
    MULTIPLIER_PLACES,
    PRICE_DIGITS,
    PRICE_PLACES,
    check_profile,
)
from minutemeter.domain.rating import included_total, plan_entries, price

A = "6f1c2a4e-0b7d-4c55-9a0e-3f2b8d1e7c90"
T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
COLLECTED = datetime(2026, 11, 22, 10, 20, tzinfo=UTC)


def profile(
    included: int = 1000, per_byte: str = "0.0001", multiplier: str = "1"
) -> BillingProfile:
    return BillingProfile(
        included_bytes=included,
        price_per_byte=Decimal(per_byte),
        multiplier=Decimal(multiplier),
        pricing_rule_version="v1",
    )


def usage(minute: int, nbytes: int, node: str = "node-a") -> MinuteUsage:
    at = T0 + timedelta(minutes=minute)
    return MinuteUsage(node, A, at, nbytes, 0, nbytes, at, at, 1)


def plan(usages: list[MinuteUsage], *, used_before: int = 0, **kw: str | int) -> QuotaPlan:
    return QuotaPlan(
        batch_id="batch-1",
        source_id="src-a",
        account_id=A,
        month="2026-11",
        used_before=used_before,
        profile=profile(**kw),  # type: ignore[arg-type]
        run_id="run-1",
        collected_at=COLLECTED,
        usages=tuple(usages),
    )


def test_included_quota_is_allocated_in_minute_order_across_the_boundary() -> None:
    # GIVEN 1000 included bytes, 700 already used, usages given out of minute order
    quota = plan([usage(2, 500), usage(0, 200), usage(1, 200)], used_before=700)

    entries = plan_entries(quota)

    # THEN minute 0 is fully included, minute 1 partly, minute 2 not at all
    assert [e.usage.minute for e in entries] == [T0 + timedelta(minutes=m) for m in (0, 1, 2)]
    assert [(e.included_bytes, e.billable_bytes) for e in entries] == [
        (200, 0),
        (100, 100),
        (0, 500),
    ]
    assert [e.quota_before for e in entries] == [700, 900, 1000]
    assert [e.amount for e in entries] == [Decimal(0), Decimal("0.0100"), Decimal("0.0500")]
    assert included_total(quota) == 300


def test_entries_carry_the_plan_context() -> None:
    entry = plan_entries(plan([usage(3, 10)]))[0]

    assert entry.source_id == "src-a"
    assert entry.batch_id == "batch-1"
    assert entry.run_id == "run-1"
    assert entry.collected_at == COLLECTED
    assert entry.quota_month == "2026-11"
    assert entry.profile == profile()
    assert entry.kind == "usage"
    assert entry.ledger_id == ledger_id("src-a", "node-a", A, T0 + timedelta(minutes=3))


def test_quota_already_exhausted_or_overdrawn_includes_nothing() -> None:
    for used_before in (1000, 5000):
        entries = plan_entries(plan([usage(0, 40)], used_before=used_before))

        assert (entries[0].included_bytes, entries[0].billable_bytes) == (0, 40)
        assert entries[0].quota_before == used_before


def test_zero_included_bytes_bills_everything() -> None:
    quota = plan([usage(0, 40), usage(1, 60)], included=0)

    assert [e.billable_bytes for e in plan_entries(quota)] == [40, 60]
    assert included_total(quota) == 0


def test_usage_exactly_at_the_quota_is_all_included() -> None:
    quota = plan([usage(0, 600), usage(1, 400)])

    assert [e.billable_bytes for e in plan_entries(quota)] == [0, 0]
    assert included_total(quota) == 1000


def test_empty_plan_has_no_entries() -> None:
    assert plan_entries(plan([])) == []
    assert included_total(plan([])) == 0


def test_same_minute_on_two_nodes_is_ordered_by_node() -> None:
    entries = plan_entries(plan([usage(0, 600, "node-b"), usage(0, 600, "node-a")]))

    assert [(e.usage.node_id, e.included_bytes) for e in entries] == [
        ("node-a", 600),
        ("node-b", 400),
    ]


# --- price --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nbytes", "per_byte", "multiplier", "amount"),
    [
        (1000, "0.0001", "1", Decimal("0.1")),
        (3, "0.1", "1", Decimal("0.3")),  # exact, unlike 3 * 0.1 in binary floats
        (1000, "0.0001", "1.5", Decimal("0.15")),
        (7, "0.000000123", "2.25", Decimal("0.0000019372500")),
        (10**15, "0.000000000001", "1", Decimal(1000)),
        (0, "0.0001", "3", Decimal(0)),
    ],
)
def test_price_is_exact_decimal(
    nbytes: int, per_byte: str, multiplier: str, amount: Decimal
) -> None:
    result = price(nbytes, profile(per_byte=per_byte, multiplier=multiplier))

    assert isinstance(result, Decimal)
    assert result == amount
    assert result == Decimal(nbytes) * Decimal(per_byte) * Decimal(multiplier)


@pytest.mark.parametrize("multiplier", ["0", "-0", "-1", "-0.5"])
def test_multiplier_at_or_below_zero_falls_back_to_one(multiplier: str) -> None:
    fallback = profile(multiplier=multiplier)

    assert fallback.effective_multiplier == Decimal(1)
    assert price(1000, fallback) == Decimal("0.1")
    assert plan_entries(plan([usage(0, 2000)], multiplier=multiplier))[0].amount == Decimal("0.1")


def test_small_positive_multiplier_is_kept() -> None:
    assert price(1000, profile(multiplier="0.01")) == Decimal("0.001")


def test_pricing_that_needs_more_than_38_digits_raises() -> None:
    # 20 significant digits of price times a 20-digit byte count: 40 digits, not 38
    too_precise = profile(per_byte="0.12345678901234567891")

    with pytest.raises((Inexact, Rounded)):
        price(12345678901234567891, too_precise)


def test_pricing_over_38_digits_raises_even_when_dropped_digits_are_zero() -> None:
    # 10**38 * 1.0 has 40 digits of coefficient after the multiply: rounding would be silent
    with pytest.raises((Inexact, Rounded)):
        price(10**38, profile(per_byte="1.0"))


def test_pricing_within_38_digits_does_not_raise() -> None:
    amount = price(10**18, profile(per_byte="0.12345678901234567891"))

    assert amount == Decimal("123456789012345678.91")


# --- ledger ids ---------------------------------------------------------------------------------


def test_ledger_id_is_uuid5_over_the_bucket_key() -> None:
    minute = T0 + timedelta(minutes=7)

    value = ledger_id("src-a", "node-a", A, minute)

    assert bucket_key("src-a", "node-a", A, minute) == f"src-a/node-a/{A}/2026-11-22T10:07:00Z"
    assert uuid.UUID(value).version == 5
    assert value == str(uuid.uuid5(LEDGER_NAMESPACE, f"src-a/node-a/{A}/2026-11-22T10:07:00Z"))
    assert value == ledger_id("src-a", "node-a", A, minute)


def test_ledger_ids_differ_per_bucket_key_component() -> None:
    other = "0a7f3e55-1c2d-4e6f-8a9b-0c1d2e3f4a5b"
    ids = {
        ledger_id("src-a", "node-a", A, T0),
        ledger_id("src-b", "node-a", A, T0),
        ledger_id("src-a", "node-b", A, T0),
        ledger_id("src-a", "node-a", other, T0),
        ledger_id("src-a", "node-a", A, T0 + timedelta(minutes=1)),
    }

    assert len(ids) == 5


def test_plan_entries_are_deterministic() -> None:
    quota = plan([usage(0, 600), usage(1, 600), usage(2, 10)], used_before=100)

    first, second = plan_entries(quota), plan_entries(quota)

    assert first == second
    assert len({e.ledger_id for e in first}) == 3


def test_entry_ids_of_usage_and_corrections() -> None:
    usage = BucketRef("src-a", "node-a", A, T0)
    assert entry_id(usage) == ledger_id("src-a", "node-a", A, T0)
    first = BucketRef("src-a", "node-a", A, T0, correction_variant(0, 500))
    again = BucketRef("src-a", "node-a", A, T0, correction_variant(0, 500))
    later = BucketRef("src-a", "node-a", A, T0, correction_variant(1, 500))
    assert entry_id(first) == entry_id(again)  # the same reconcile names the same correction
    assert len({entry_id(usage), entry_id(first), entry_id(later)}) == 3


# --- money bounds (domain/money.py) -------------------------------------------------------------


def _digits(count: int, places: int) -> st.SearchStrategy[Decimal]:
    """Decimals of at most ``count`` significant digits and ``places`` decimal places, in
    [0, 10**6]."""
    return st.builds(
        lambda coefficient, exponent: Decimal(coefficient).scaleb(exponent),
        st.integers(0, 10**count - 1) | st.just(10**count - 1), st.integers(-places, 0),
    ).filter(lambda d: d <= 10**6)


@settings(max_examples=300, deadline=None)
@given(
    price_per_byte=_digits(PRICE_DIGITS, PRICE_PLACES),
    multiplier=_digits(MULTIPLIER_DIGITS, MULTIPLIER_PLACES),
    nbytes=st.integers(-MAX_BILLABLE_BYTES, MAX_BILLABLE_BYTES)
    | st.sampled_from([MAX_BILLABLE_BYTES, -MAX_BILLABLE_BYTES, 2**60, 2**63, 10**19]),
)
def test_every_profile_within_the_bounds_prices_exactly_and_fits_dynamodb(
    price_per_byte: Decimal, multiplier: Decimal, nbytes: int
) -> None:
    checked = check_profile(BillingProfile(0, price_per_byte, multiplier, "v1"))

    amount = price(nbytes, checked)  # never Inexact or Rounded

    wide = Context(prec=100)
    assert amount == wide.multiply(wide.multiply(Decimal(nbytes), checked.price_per_byte),
                                   checked.effective_multiplier)
    TypeSerializer().serialize(amount)  # a DynamoDB number: 38 digits, exponent in range


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("price_per_byte", "0." + "1" * 38),
        ("price_per_byte", "1234567890123"),
        ("price_per_byte", "1000000.1"),
        ("price_per_byte", "1E-19"),
        ("price_per_byte", "-1E-9"),
        ("price_per_byte", "Infinity"),
        ("price_per_byte", "NaN"),
        ("multiplier", "1.234567"),
        ("multiplier", "0.0000001"),
        ("multiplier", "1000001"),
        ("multiplier", "-0.5"),
    ],
)
def test_money_outside_the_bounds_is_refused(field: str, value: str) -> None:
    base = {"price_per_byte": Decimal("0.000000001"), "multiplier": Decimal(1)}
    base[field] = Decimal(value)
    with pytest.raises(InputError, match=field.replace("_", "-")):
        check_profile(BillingProfile(0, base["price_per_byte"], base["multiplier"], "v1"))


@pytest.mark.parametrize("included", [-1, 2**63 + 1])
def test_included_bytes_outside_0_to_2_63_are_refused(included: int) -> None:
    with pytest.raises(InputError, match="--included-bytes"):
        check_profile(BillingProfile(included, Decimal(0), Decimal(1), "v1"))


def test_canonical_money_drops_trailing_fractional_zeros_only() -> None:
    checked = check_profile(
        BillingProfile(2**63, Decimal("1000000.000"), Decimal("-0"), "v1"))
    assert (str(checked.price_per_byte), str(checked.multiplier)) == ("1000000", "0")
    assert str(check_profile(profile(per_byte="0.000000001000")).price_per_byte) == "1E-9"


def test_the_worst_case_amount_uses_all_38_digits_exactly() -> None:
    worst = check_profile(BillingProfile(0, Decimal("999999.999999"), Decimal("999999"), "v"))
    amount = price(MAX_BILLABLE_BYTES, worst)
    assert len(amount.as_tuple().digits) == 38
