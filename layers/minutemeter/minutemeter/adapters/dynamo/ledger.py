"""The ledger table: one item per minute bucket (its ledger entry) and one per account-month quota.

Keys::

    entry  pk = ENTRY#<source_id>#<account_id>   sk = <minute RFC 3339>#<node_id>
    quota  pk = QUOTA#<account_id>               sk = <YYYY-MM>

A quota item holds ``used_bytes``, its ``version``, the last reserved plan (``pending``) and the
bucket ``marks`` (``domain/marks.py``: latest reserved minute per source and node, epoch µs).

The bucket key is the item key, so ``attribute_not_exists(pk)`` makes each entry write-once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from minutemeter.adapters.dynamo.base import DynamoTable, Item
from minutemeter.domain.errors import QuotaConflictError
from minutemeter.domain.ids import entry_ref
from minutemeter.domain.marks import Marks
from minutemeter.domain.model import (
    BillingProfile,
    BucketRef,
    CorrectionSpec,
    LedgerEntry,
    MinuteUsage,
    QuotaPlan,
    QuotaState,
)
from minutemeter.domain.timeutil import format_instant, format_second, parse_rfc3339
from minutemeter.ports import LedgerFilter, PutOutcome

# A partition's buckets are read as one key range when the range spans at most this many
# minutes per bucket asked for; more scattered ones are read by key.
RANGE_READ_SPREAD = 4


def entry_key(
    source_id: str, node_id: str, account_id: str, minute: datetime, variant: str = ""
) -> dict[str, str]:
    """A bucket's usage entry, or (``variant`` ``C<target>``) a correction of it."""
    sk = f"{format_second(minute)}#{node_id}" + (f"#{variant}" if variant else "")
    return {"pk": f"ENTRY#{source_id}#{account_id}", "sk": sk}


def quota_key(account_id: str, month: str) -> dict[str, str]:
    return {"pk": f"QUOTA#{account_id}", "sk": month}


class DynamoLedgerStore:
    """:class:`minutemeter.ports.LedgerStore` on a DynamoDB table."""

    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    def get_quota(self, account_id: str, month: str, *, consistent: bool = True) -> QuotaState:
        item = self.table.get(quota_key(account_id, month), consistent=consistent)
        if item is None:
            return QuotaState(account_id=account_id, month=month)
        pending = item.get("pending")
        marks = item.get("marks")
        return QuotaState(
            account_id=account_id,
            month=month,
            used_bytes=int(item["used_bytes"]),
            version=int(item["version"]),
            pending=_plan_from_item(pending) if pending else None,
            marks=None if marks is None else {k: _from_micros(v) for k, v in marks.items()},
        )

    def reserve_quota(
        self,
        plan: QuotaPlan,
        *,
        expected_version: int,
        new_used: int,
        marks: Marks | None = None,
    ) -> None:
        condition = "attribute_not_exists(pk)" if expected_version == 0 else "version = :expected"
        attribute_values: dict[str, Any] = {
            ":used": new_used,
            ":version": expected_version + 1,
            ":pending": _plan_to_item(plan),
            ":account": plan.account_id,
            ":updated": format_instant(plan.collected_at),
        }
        expression = ("SET used_bytes = :used, version = :version, pending = :pending, "
                      "account_id = :account, updated_at = :updated")
        if marks is not None:  # the whole map: the version condition makes that safe
            expression += ", marks = :marks"
            attribute_values[":marks"] = marks_to_item(marks)
        if expected_version:
            attribute_values[":expected"] = expected_version
        reserved = self.table.update(
            quota_key(plan.account_id, plan.month),
            expression,
            condition=condition,
            values=attribute_values,
        )
        if not reserved.ok:
            raise QuotaConflictError(
                f"quota {plan.account_id}/{plan.month} moved past version {expected_version}"
            ) from reserved.failure

    def existing_buckets(
        self, refs: Sequence[BucketRef], *, consistent: bool = True
    ) -> set[BucketRef]:
        """A bucket's entries sit in one partition per (source, account), sorted by minute, so
        the buckets of a partition that lie close together are one Query of their key range
        (billed by the bytes read, about a quarter unit per entry) instead of a BatchGetItem
        (a whole unit per key); scattered ones are fetched by key."""
        by_key = {
            _key_tuple(entry_key(r.source_id, r.node_id, r.account_id, r.minute, r.variant)): r
            for r in refs
        }
        by_partition: dict[str, list[BucketRef]] = {}
        for (pk, _sk), ref in by_key.items():
            by_partition.setdefault(pk, []).append(ref)
        found: set[BucketRef] = set()
        scattered: list[tuple[str, str]] = []
        for pk, group in by_partition.items():
            low, high = min(r.minute for r in group), max(r.minute for r in group)
            if (high - low) // timedelta(minutes=1) + 1 > RANGE_READ_SPREAD * len(group):
                scattered.extend(k for k, r in by_key.items() if r in group)
                continue
            items = self.table.query(
                "pk = :pk AND sk BETWEEN :low AND :high",
                {":pk": pk, ":low": format_second(low),
                 ":high": format_second(high + timedelta(seconds=1))},
                projection="pk, sk", consistent=consistent,
            )
            found.update(by_key[k] for i in items if (k := (i["pk"], i["sk"])) in by_key)
        if scattered:
            fetched = self.table.batch_get([dict(pk=pk, sk=sk) for pk, sk in scattered],
                                           projection="pk, sk")
            found.update(by_key[(i["pk"], i["sk"])] for i in fetched)
        return found

    def put_entries(self, entries: Sequence[LedgerEntry]) -> PutOutcome:
        written = existed = 0
        for entry in entries:
            if self.table.put(_entry_to_item(entry), condition="attribute_not_exists(pk)"):
                written += 1
            else:
                existed += 1
        return PutOutcome(written=written, existed=existed)

    def write_reserved(self, entries: Sequence[LedgerEntry]) -> int:
        self.table.batch_put([_entry_to_item(entry) for entry in entries])
        return len(entries)

    def last_usage_before(
        self, source_id: str, node_id: str, account_id: str, before: datetime
    ) -> LedgerEntry | None:
        items = self.table.query(
            "pk = :pk AND sk < :before",
            {
                ":pk": f"ENTRY#{source_id}#{account_id}",
                ":before": format_second(before),
                ":usage": "usage",
                ":node": node_id,
            },
            filter_expression="kind = :usage AND node_id = :node",
            newest_first=True,
        )
        for item in items:  # newest first; the generator stops paging once one is found
            return _entry_from_item(item)
        return None

    def export(self, selection: LedgerFilter) -> Iterator[LedgerEntry]:
        low = format_second(selection.since) if selection.since else None
        high = format_second(selection.until) if selection.until else None
        if selection.source_id and selection.account_id:
            condition = "pk = :pk"
            attribute_values: dict[str, Any] = {
                ":pk": f"ENTRY#{selection.source_id}#{selection.account_id}"
            }
            if low and high:
                condition += " AND sk BETWEEN :low AND :high"
                attribute_values.update({":low": low, ":high": high})
            elif low:
                condition += " AND sk >= :low"
                attribute_values[":low"] = low
            elif high:
                condition += " AND sk < :high"
                attribute_values[":high"] = high
            items = self.table.query(condition, attribute_values)
        else:
            prefix = "ENTRY#" + (f"{selection.source_id}#" if selection.source_id else "")
            items = self.table.scan("begins_with(pk, :prefix)", {":prefix": prefix})
        for item in items:
            entry = _entry_from_item(item)
            if selection.account_id and entry.usage.account_id != selection.account_id:
                continue
            minute = entry.usage.minute
            if selection.since and minute < selection.since:
                continue
            if selection.until and minute >= selection.until:
                continue
            yield entry


def marks_to_item(marks: Marks) -> Item:
    """Bucket marks as stored: epoch microseconds per (source, node) key."""
    return {key: _micros(minute) for key, minute in marks.items()}


def _key_tuple(key: dict[str, str]) -> tuple[str, str]:
    return key["pk"], key["sk"]


def _entry_to_item(entry: LedgerEntry) -> Item:
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


def _entry_from_item(item: Item) -> LedgerEntry:
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
def _plan_to_item(plan: QuotaPlan) -> Item:
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


def _plan_from_item(item: Item) -> QuotaPlan:
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
