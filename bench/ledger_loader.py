"""Billing a long history into DynamoDB Local quickly, for the reconcile benchmark.

The real collector (``collect_source``: fetch, validate, diff, rate, plan) runs unchanged, with
one difference in its ledger: the per-account quota round trips (read the quota item, ask which
buckets exist, reserve with a conditional update) are answered from memory instead of DynamoDB.
That is safe only on a fresh table with a single writer, which is what the benchmark has. The
entries themselves are written by the adapter's own ``write_reserved`` (BatchWriteItem), and the
quota items are written at the end exactly as the last reservation of each account-month left
them, so the table holds what a real collector run would have written (run ids and collection
times aside). The collector's protocol costs four round trips per account and chunk, which
DynamoDB Local serves at roughly 30 account-chunks a second on two cores; this skips three.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from minutemeter.adapters.dynamo.ledger import DynamoLedgerStore, month_index_key, quota_key
from minutemeter.adapters.dynamo.ledger_items import (
    entry_key,
    marks_to_item,
    plan_to_item,
    statement_to_item,
)
from minutemeter.domain.ids import entry_ref
from minutemeter.domain.marks import Marks
from minutemeter.domain.model import BucketRef, LedgerEntry, QuotaPlan, QuotaState
from minutemeter.domain.statement import Statement
from minutemeter.domain.timeutil import format_instant


class LoaderLedger(DynamoLedgerStore):
    """A :class:`DynamoLedgerStore` whose quota bookkeeping lives in memory (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._quotas: dict[tuple[str, str], QuotaState] = {}
        self._written: set[tuple[str, str]] = set()

    def get_quota(self, account_id: str, month: str, *, consistent: bool = True) -> QuotaState:
        with self._lock:
            return self._quotas.get((account_id, month)) or QuotaState(account_id, month)

    def reserve_quota(
        self,
        plan: QuotaPlan,
        *,
        expected_version: int,
        new_used: int,
        marks: Marks | None = None,
        statement: Statement | None = None,
    ) -> None:
        key = (plan.account_id, plan.month)
        with self._lock:
            current = self._quotas.get(key)
            if (current.version if current else 0) != expected_version:
                raise AssertionError("the loader is the only writer of a fresh table")
            self._quotas[key] = QuotaState(plan.account_id, plan.month, new_used,
                                           expected_version + 1, plan, marks=marks,
                                           statement=statement)

    def existing_buckets(
        self, refs: Sequence[BucketRef], *, consistent: bool = True
    ) -> set[BucketRef]:
        with self._lock:
            return {r for r in refs if _key(r) in self._written}

    def write_reserved(self, entries: Sequence[LedgerEntry]) -> int:
        written = super().write_reserved(entries)
        with self._lock:
            self._written.update(_key(entry_ref(e)) for e in entries)
        return written

    def write_quotas(self) -> int:
        """The quota items as ``reserve_quota`` would have left them; returns how many."""
        items = []
        for (account_id, month), quota in sorted(self._quotas.items()):
            assert quota.pending is not None
            items.append({
                **quota_key(account_id, month),
                "used_bytes": quota.used_bytes,
                "version": quota.version,
                "pending": plan_to_item(quota.pending),
                "updated_at": format_instant(quota.pending.collected_at),
                **({} if quota.marks is None else {"marks": marks_to_item(quota.marks)}),
                **({} if quota.statement is None
                   else {"statement": statement_to_item(quota.statement)}),
                **({} if quota.marks is None and quota.statement is None
                   else {"summary_version": quota.version}),
            })
            items.append({**month_index_key(account_id, month), "type": "month"})
        self.table.batch_put(items)
        return len(self._quotas)

    @property
    def entries_written(self) -> int:
        return len(self._written)


def _key(ref: BucketRef) -> tuple[str, str]:
    key = entry_key(ref.source_id, ref.node_id, ref.account_id, ref.minute, ref.variant)
    return key["pk"], key["sk"]

