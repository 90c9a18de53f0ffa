"""The ledger table: one item per minute bucket (its ledger entry) and one per account-month quota.

Keys::

    entry  pk = ENTRY#<source_id>#<account_id>   sk = <minute RFC 3339>#<node_id>
    quota  pk = QUOTA#<account_id>               sk = <YYYY-MM>

A quota item holds ``used_bytes``, its ``version``, the last reserved plan (``pending``) and the
bucket ``marks`` (``domain/marks.py``: latest reserved minute per source and node, epoch µs).

The bucket key is the item key, so ``attribute_not_exists(pk)`` makes each entry write-once.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from minutemeter.adapters.dynamo.base import DynamoTable
from minutemeter.adapters.dynamo.ledger_items import (
    entry_from_item,
    entry_key,
    entry_to_item,
    marks_from_item,
    marks_to_item,
    plan_from_item,
    plan_to_item,
    statement_from_item,
    statement_to_item,
)
from minutemeter.domain.errors import QuotaConflictError
from minutemeter.domain.marks import Marks
from minutemeter.domain.model import BucketRef, LedgerEntry, QuotaPlan, QuotaState
from minutemeter.domain.statement import Statement
from minutemeter.domain.timeutil import format_instant, format_second
from minutemeter.ports import LedgerFilter, PutOutcome

# A partition's buckets are read as one key range when the range spans at most this many
# minutes per bucket asked for; more scattered ones are read by key.
RANGE_READ_SPREAD = 4
# The month index is spread over this many partitions, so that the first run of a month,
# which adds every account at once, does not write to one partition only.
MONTH_SHARDS = 16


QUOTA_PREFIX = "QUOTA#"


def quota_key(account_id: str, month: str) -> dict[str, str]:
    """The quota item of an account-month. Its size decides what every reservation costs (a
    write unit per KB), so it holds no attribute that its key already says."""
    return {"pk": f"{QUOTA_PREFIX}{account_id}", "sk": month}


def month_index_key(account_id: str, month: str) -> dict[str, str]:
    """The account's entry in the month's index (``statements`` reads it, never a Scan)."""
    return {"pk": month_partition(month, zlib.crc32(account_id.encode()) % MONTH_SHARDS),
            "sk": account_id}


def month_partition(month: str, shard: int) -> str:
    return f"MONTH#{month}#{shard:02d}"


class DynamoLedgerStore:
    """:class:`minutemeter.ports.LedgerStore` on a DynamoDB table."""

    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    def get_quota(self, account_id: str, month: str, *, consistent: bool = True) -> QuotaState:
        item = self.table.get(quota_key(account_id, month), consistent=consistent)
        return _quota_from_item(account_id, month, item)

    def get_quotas(self, account_ids: Iterable[str], month: str) -> Iterator[QuotaState]:
        """The quota items of ``account_ids`` for ``month`` (eventually consistent; accounts
        without one are left out), in batches."""
        keys = [quota_key(a, month) for a in account_ids]
        for item in self.table.batch_get(keys, consistent=False) if keys else []:
            yield _quota_from_item(str(item["pk"]).removeprefix(QUOTA_PREFIX), month, item)

    def month_accounts(self, month: str) -> Iterator[str]:
        """Every account with a quota item in ``month``, from the month index (Queries)."""
        for shard in range(MONTH_SHARDS):
            for item in self.table.query("pk = :pk", {":pk": month_partition(month, shard)},
                                         consistent=False):
                yield str(item["sk"])

    def reserve_quota(
        self,
        plan: QuotaPlan,
        *,
        expected_version: int,
        new_used: int,
        marks: Marks | None = None,
        statement: Statement | None = None,
    ) -> None:
        if expected_version == 0:  # the month's first plan: list the account in its index
            # first. Idempotent; a crash before the reservation leaves an index entry without a
            # quota item, which the readers of the index skip.
            self.table.put({**month_index_key(plan.account_id, plan.month), "type": "month"})
        condition = "attribute_not_exists(pk)" if expected_version == 0 else "version = :expected"
        attribute_values: dict[str, Any] = {
            ":used": new_used,
            ":version": expected_version + 1,
            ":pending": plan_to_item(plan),
            ":updated": format_instant(plan.collected_at),
        }
        expression = ("SET used_bytes = :used, version = :version, pending = :pending, "
                      "updated_at = :updated")
        if marks is not None:  # whole values: the version condition makes that safe
            expression += ", marks = :marks"
            attribute_values[":marks"] = marks_to_item(marks)
        if statement is not None:
            expression += ", statement = :statement"
            attribute_values[":statement"] = statement_to_item(statement)
        if marks is not None or statement is not None:
            # The version they are true at: code from before marks moves ``version`` without
            # them, and marks or a statement it left behind must not be trusted (see
            # ``_quota_from_item``).
            expression += ", summary_version = :version"
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

    def month_entries(self, source_id: str, account_id: str, month: str) -> Iterator[LedgerEntry]:
        """The entries of one source and account whose minute is in ``month`` (one Query)."""
        low = f"{month}-01T00:00:00Z"
        high = f"{month}-31T23:59:59Z#\uffff"
        for item in self.table.query("pk = :pk AND sk BETWEEN :low AND :high",
                                     {":pk": f"ENTRY#{source_id}#{account_id}", ":low": low,
                                      ":high": high}):
            yield entry_from_item(item)

    def partition_entries(
        self, source_id: str, account_id: str, *, since: datetime, until: datetime,
        after: str | None = None,
    ) -> Iterator[tuple[str, LedgerEntry]]:
        """One Query of the partition's key range: from ``since`` (or ``after``, itself left
        out) to ``until`` (``<minute>#...`` sorts after ``<minute>``, so that minute is out)."""
        low, high = format_second(since), format_second(until)
        if after is not None and after > low:
            low = after
        if low >= high:
            return
        for item in self.table.query("pk = :pk AND sk BETWEEN :low AND :high",
                                     {":pk": f"ENTRY#{source_id}#{account_id}", ":low": low,
                                      ":high": high}):
            if item["sk"] != after:
                yield str(item["sk"]), entry_from_item(item)

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
            if self.table.put(entry_to_item(entry), condition="attribute_not_exists(pk)"):
                written += 1
            else:
                existed += 1
        return PutOutcome(written=written, existed=existed)

    def write_reserved(self, entries: Sequence[LedgerEntry]) -> int:
        self.table.batch_put([entry_to_item(entry) for entry in entries])
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
            return entry_from_item(item)
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
            entry = entry_from_item(item)
            if selection.account_id and entry.usage.account_id != selection.account_id:
                continue
            minute = entry.usage.minute
            if selection.since and minute < selection.since:
                continue
            if selection.until and minute >= selection.until:
                continue
            yield entry


def _key_tuple(key: dict[str, str]) -> tuple[str, str]:
    return key["pk"], key["sk"]


def _quota_from_item(account_id: str, month: str, item: dict[str, Any] | None) -> QuotaState:
    if item is None:
        return QuotaState(account_id=account_id, month=month)
    pending, marks, statement = item.get("pending"), item.get("marks"), item.get("statement")
    version = int(item["version"])
    if "summary_version" not in item or int(item["summary_version"]) != version:
        # Written, or last moved, by code that did not keep marks and statement: a rollback
        # below them and forward again. They may miss entries; treat the item as one from
        # before they existed (every bucket looked up, the statement summed from entries).
        marks = statement = None
    return QuotaState(
        account_id=account_id,
        month=month,
        used_bytes=int(item["used_bytes"]),
        version=version,
        pending=plan_from_item(pending) if pending else None,
        marks=None if marks is None else marks_from_item(marks),
        statement=None if statement is None else statement_from_item(account_id, month,
                                                                     statement),
    )

