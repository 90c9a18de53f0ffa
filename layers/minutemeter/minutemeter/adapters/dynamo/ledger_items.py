"""Ledger items to and from domain records: entries, pending plans, profiles, marks and
statements, as the ledger table stores them (``ledger.py`` has the keys and the operations).

Names without a leading underscore are used by the bench and the tests to build items the
way the adapter does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from minutemeter.adapters.dynamo.base import Item
from minutemeter.domain.ids import entry_ref
from minutemeter.domain.marks import Marks
from minutemeter.domain.model import (
    BillingProfile,
    CorrectionSpec,
    LedgerEntry,
    MinuteUsage,
    QuotaPlan,
)
from minutemeter.domain.statement import Statement, Totals, sum_totals
from minutemeter.domain.timeutil import format_instant, format_second, parse_rfc3339


def entry_key(
    source_id: str, node_id: str, account_id: str, minute: datetime, variant: str = ""
) -> dict[str, str]:
    """A bucket's usage entry, or (``variant`` ``C<target>``) a correction of it."""
    sk = f"{format_second(minute)}#{node_id}" + (f"#{variant}" if variant else "")
    return {"pk": f"ENTRY#{source_id}#{account_id}", "sk": sk}


def marks_to_item(marks: Marks) -> Item:
    """Bucket marks as stored: epoch microseconds per (source, node) key."""
    return {key: _micros(minute) for key, minute in marks.items()}


def marks_from_item(item: Any) -> dict[str, datetime]:
    return {str(key): _from_micros(value) for key, value in item.items()}


def statement_to_item(statement: Statement) -> Item:
    """The totals per pricing version only (the overall totals are their sum: storing both
    would put a reservation past 1 KB, two write units); amounts as text (a month's sum may
    need more than 38 digits)."""
    return {"by_pricing": {v: _totals_to_item(t) for v, t in statement.by_pricing.items()}}


def statement_from_item(account_id: str, month: str, item: Any) -> Statement:
    by_pricing = {str(v): _totals_from_item(t) for v, t in item.get("by_pricing", {}).items()}
    return Statement(account_id, month, sum_totals(by_pricing.values()), by_pricing)


def _totals_to_item(totals: Totals) -> Item:
    return {"bytes": totals.bytes, "included_bytes": totals.included_bytes,
            "billable_bytes": totals.billable_bytes, "amount": format(totals.amount, "f"),
            "entries": totals.entries, "corrections": totals.corrections}


def _totals_from_item(item: Any) -> Totals:
    return Totals(int(item["bytes"]), int(item["included_bytes"]), int(item["billable_bytes"]),
                  Decimal(str(item["amount"])), int(item["entries"]), int(item["corrections"]))


def entry_to_item(entry: LedgerEntry) -> Item:
    usage = entry.usage
    ref = entry_ref(entry)
    return {
        **entry_key(entry.source_id, usage.node_id, usage.account_id, usage.minute, ref.variant),
        **_correction_to_item(entry.correction),
        "type": "entry",
        "kind": entry.kind,
        "ledger_id": entry.ledger_id,
        "source_id": entry.source_id,
        "node_id": usage.node_id,
        "account_id": usage.account_id,
        "minute": format_second(usage.minute),
        "bytes": usage.bytes,
        "counter_start": usage.counter_start,
        "counter_end": usage.counter_end,
        "first_taken_at": format_instant(usage.first_taken_at),
        "last_taken_at": format_instant(usage.last_taken_at),
        "samples": usage.samples,
        "resets": usage.resets,
        "included_bytes": entry.included_bytes,
        "billable_bytes": entry.billable_bytes,
        "amount": entry.amount,
        **_profile_to_item(entry.profile),
        "quota_month": entry.quota_month,
        "quota_before": entry.quota_before,
        "batch_id": entry.batch_id,
        "run_id": entry.run_id,
        "collected_at": format_instant(entry.collected_at),
        "clock_bound_ms": entry.clock_bound_ms,
    }


def entry_from_item(item: Item) -> LedgerEntry:
    usage = MinuteUsage(
        node_id=str(item["node_id"]),
        account_id=str(item["account_id"]),
        minute=parse_rfc3339(item["minute"]),
        bytes=int(item["bytes"]),
        counter_start=int(item["counter_start"]),
        counter_end=int(item["counter_end"]),
        first_taken_at=parse_rfc3339(item["first_taken_at"]),
        last_taken_at=parse_rfc3339(item["last_taken_at"]),
        samples=int(item["samples"]),
        resets=int(item.get("resets", 0)),
    )
    return LedgerEntry(
        ledger_id=str(item["ledger_id"]),
        source_id=str(item["source_id"]),
        usage=usage,
        included_bytes=int(item["included_bytes"]),
        billable_bytes=int(item["billable_bytes"]),
        amount=Decimal(item["amount"]),
        profile=_profile_from_item(item),
        quota_month=str(item["quota_month"]),
        quota_before=int(item["quota_before"]),
        batch_id=str(item["batch_id"]),
        run_id=str(item["run_id"]),
        collected_at=parse_rfc3339(item["collected_at"]),
        kind=str(item.get("kind", "usage")),
        clock_bound_ms=_optional_decimal(item.get("clock_bound_ms")),
        correction=_correction_from_item(item, usage),
    )


def _correction_to_item(spec: CorrectionSpec | None) -> Item:
    if spec is None:
        return {}
    return {
        "target_bytes": spec.target_bytes,
        "sequence": spec.sequence,
        "included_before": spec.included_before,
        "corrects": spec.corrects,
        "reason": spec.reason,
        "reconcile_id": spec.reconcile_id,
    }


def _correction_from_item(item: Item, usage: MinuteUsage) -> CorrectionSpec | None:
    if item.get("kind") != "correction":
        return None
    return CorrectionSpec(
        usage=usage,
        target_bytes=int(item["target_bytes"]),
        sequence=int(item["sequence"]),
        included_before=int(item["included_before"]),
        corrects=item.get("corrects"),
        reason=str(item["reason"]),
        reconcile_id=str(item["reconcile_id"]),
    )


def _profile_to_item(profile: BillingProfile) -> Item:
    return {
        "included_quota_bytes": profile.included_bytes,
        "price_per_byte": profile.price_per_byte,
        "multiplier": profile.multiplier,
        "pricing_rule_version": profile.pricing_rule_version,
    }


def _profile_from_item(item: Item) -> BillingProfile:
    return BillingProfile(
        included_bytes=int(item["included_quota_bytes"]),
        price_per_byte=Decimal(item["price_per_byte"]),
        multiplier=Decimal(item["multiplier"]),
        pricing_rule_version=str(item["pricing_rule_version"]),
    )


# A pending plan is stored compactly: one list per usage, times as epoch microseconds.
def plan_to_item(plan: QuotaPlan) -> Item:
    return {
        "batch_id": plan.batch_id,
        "source_id": plan.source_id,
        "account_id": plan.account_id,
        "month": plan.month,
        "used_before": plan.used_before,
        "run_id": plan.run_id,
        "collected_at": format_instant(plan.collected_at),
        "clock_bound_ms": plan.clock_bound_ms,
        **_profile_to_item(plan.profile),
        "usages": [_usage_row(u) for u in plan.usages],
        "corrections": [
            [*_usage_row(c.usage), c.target_bytes, c.included_before, c.corrects or "",
             c.reason, c.reconcile_id, c.sequence]
            for c in plan.corrections
        ],
    }


def _usage_row(u: MinuteUsage) -> list[Any]:
    return [
        u.node_id,
        _micros(u.minute),
        u.bytes,
        u.counter_start,
        u.counter_end,
        _micros(u.first_taken_at),
        _micros(u.last_taken_at),
        u.samples,
        u.resets,
    ]


def _usage_from_row(account_id: str, row: list[Any]) -> MinuteUsage:
    return MinuteUsage(
        node_id=str(row[0]),
        account_id=account_id,
        minute=_from_micros(row[1]),
        bytes=int(row[2]),
        counter_start=int(row[3]),
        counter_end=int(row[4]),
        first_taken_at=_from_micros(row[5]),
        last_taken_at=_from_micros(row[6]),
        samples=int(row[7]),
        resets=int(row[8]),
    )


def plan_from_item(item: Item) -> QuotaPlan:
    account_id = str(item["account_id"])
    corrections = tuple(
        CorrectionSpec(
            usage=_usage_from_row(account_id, row),
            target_bytes=int(row[9]),
            included_before=int(row[10]),
            corrects=str(row[11]) or None,
            reason=str(row[12]),
            reconcile_id=str(row[13]),
            sequence=int(row[14]),
        )
        for row in item.get("corrections", [])
    )
    return QuotaPlan(
        batch_id=str(item["batch_id"]),
        source_id=str(item["source_id"]),
        account_id=account_id,
        month=str(item["month"]),
        used_before=int(item["used_before"]),
        profile=_profile_from_item(item),
        run_id=str(item["run_id"]),
        collected_at=parse_rfc3339(item["collected_at"]),
        usages=tuple(_usage_from_row(account_id, row) for row in item["usages"]),
        clock_bound_ms=_optional_decimal(item.get("clock_bound_ms")),
        corrections=corrections,
    )


def _optional_decimal(value: Any) -> Decimal | None:
    return Decimal(value) if value is not None else None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_micros(value: Any) -> datetime:
    return _EPOCH + timedelta(microseconds=int(value))
