"""Pricing and included-quota allocation: pure functions over Decimal money."""

from __future__ import annotations

from decimal import Context, Decimal, Inexact, Rounded

from minutemeter.domain.ids import ledger_id
from minutemeter.domain.model import BillingProfile, LedgerEntry, QuotaPlan

# DynamoDB numbers hold 38 significant digits; an amount that needs more is a pricing error,
# not something to round silently.
_MONEY = Context(prec=38, traps=[Inexact, Rounded])


def price(billable_bytes: int, profile: BillingProfile) -> Decimal:
    """``billable_bytes * price_per_byte * multiplier``, exact (raises ``decimal.Inexact``)."""
    return _MONEY.multiply(
        _MONEY.multiply(Decimal(billable_bytes), profile.price_per_byte),
        profile.effective_multiplier,
    )


def plan_entries(plan: QuotaPlan) -> list[LedgerEntry]:
    """The ledger entries of a quota reservation, included bytes allocated in minute order.

    Deterministic: the runner that reserved and any runner that finishes the reservation after
    a crash write identical entries. ``plan.used_before`` is the month's included bytes already
    used before this reservation.
    """
    used = plan.used_before
    limit = plan.profile.included_bytes
    entries: list[LedgerEntry] = []
    for usage in sorted(plan.usages, key=lambda u: (u.minute, u.node_id)):
        included = min(usage.bytes, max(0, limit - used))
        billable = usage.bytes - included
        entries.append(
            LedgerEntry(
                ledger_id=ledger_id(plan.source_id, usage.node_id, usage.account_id, usage.minute),
                source_id=plan.source_id,
                usage=usage,
                included_bytes=included,
                billable_bytes=billable,
                amount=price(billable, plan.profile),
                profile=plan.profile,
                quota_month=plan.month,
                quota_before=used,
                batch_id=plan.batch_id,
                run_id=plan.run_id,
                collected_at=plan.collected_at,
                clock_bound_ms=plan.clock_bound_ms,
            )
        )
        used += included
    return entries


def included_total(plan: QuotaPlan) -> int:
    """Included bytes the reservation takes from the month's quota."""
    return sum(entry.included_bytes for entry in plan_entries(plan))
