"""Pricing and included-quota allocation: pure functions over Decimal money."""

from __future__ import annotations

from datetime import datetime
from decimal import Context, Decimal, Inexact, Rounded

from minutemeter.domain.ids import entry_id, item_ref
from minutemeter.domain.model import (
    BillingProfile,
    CorrectionSpec,
    LedgerEntry,
    MinuteUsage,
    QuotaPlan,
)

# DynamoDB numbers hold 38 significant digits; an amount that needs more is a pricing error,
# not something to round silently. The bounds of domain/money.py (checked wherever a profile is
# accepted) keep every amount of up to MAX_BILLABLE_BYTES within them.
_MONEY = Context(prec=38, traps=[Inexact, Rounded])


def price(billable_bytes: int, profile: BillingProfile) -> Decimal:
    """``billable_bytes * price_per_byte * multiplier``, exact.

    Never rounds: raises ``decimal.Inexact``/``Rounded`` when the product needs more than 38
    significant digits, which cannot happen for a profile within ``domain.money``'s bounds
    and ``|billable_bytes| <= money.MAX_BILLABLE_BYTES``.
    """
    return _MONEY.multiply(
        _MONEY.multiply(Decimal(billable_bytes), profile.price_per_byte),
        profile.effective_multiplier,
    )


def plan_entries(plan: QuotaPlan) -> list[LedgerEntry]:
    """The ledger entries of a quota reservation, included bytes allocated in minute order.

    Deterministic: the runner that reserved and any runner that finishes the reservation after
    a crash write identical entries. ``plan.used_before`` is the month's included bytes already
    used before this reservation.

    Usage takes included bytes from what is left of the month's quota. So does a correction
    that adds usage; one that removes usage gives back at most what its bucket holds. Later
    minutes are not re-rated (the ledger is append-only): a decrease frees quota for usage
    still to come.
    """
    used = plan.used_before
    limit = plan.profile.included_bytes
    entries: list[LedgerEntry] = []
    items: list[MinuteUsage | CorrectionSpec] = [*plan.usages, *plan.corrections]
    for item in sorted(items, key=_minute_order):
        spec = item if isinstance(item, CorrectionSpec) else None
        usage = spec.usage if spec else item
        assert isinstance(usage, MinuteUsage)
        if usage.bytes >= 0:
            included = min(usage.bytes, max(0, limit - used))
        else:
            included = -min(-usage.bytes, spec.included_before if spec else 0)
        billable = usage.bytes - included
        entries.append(
            LedgerEntry(
                ledger_id=entry_id(item_ref(plan.source_id, item)),
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
                kind="correction" if spec else "usage",
                clock_bound_ms=plan.clock_bound_ms,
                correction=spec,
            )
        )
        used += included
    return entries


def _minute_order(item: MinuteUsage | CorrectionSpec) -> tuple[datetime, str]:
    usage = item.usage if isinstance(item, CorrectionSpec) else item
    return usage.minute, usage.node_id


def included_total(plan: QuotaPlan) -> int:
    """Included bytes the reservation takes from the month's quota."""
    return sum(entry.included_bytes for entry in plan_entries(plan))
