"""Pricing and included-quota allocation: pure functions over Decimal money."""

from __future__ import annotations

from decimal import Context, Decimal, Inexact, Rounded

from minutemeter.domain.ids import correction_id, correction_variant, ledger_id
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
    if plan.corrections:
        return _correction_entries(plan)
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


def _correction_entries(plan: QuotaPlan) -> list[LedgerEntry]:
    """Corrections, in minute order: an increase takes included bytes from what is left of the
    month's quota; a decrease gives back at most what its bucket holds. Later minutes are not
    re-rated (the ledger is append-only); a decrease frees quota for usage still to come."""
    used = plan.used_before
    limit = plan.profile.included_bytes
    entries: list[LedgerEntry] = []
    for spec in sorted(plan.corrections, key=lambda c: (c.usage.minute, c.usage.node_id)):
        delta = spec.usage.bytes
        if delta >= 0:
            included = min(delta, max(0, limit - used))
        else:
            included = -min(-delta, spec.included_before)
        billable = delta - included
        usage = spec.usage
        entries.append(
            LedgerEntry(
                ledger_id=correction_id(
                    plan.source_id, usage.node_id, usage.account_id, usage.minute,
                    correction_variant(spec.sequence, spec.target_bytes),
                ),
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
                kind="correction",
                correction=spec,
            )
        )
        used += included
    return entries


def included_total(plan: QuotaPlan) -> int:
    """Included bytes the reservation takes from the month's quota."""
    return sum(entry.included_bytes for entry in plan_entries(plan))
