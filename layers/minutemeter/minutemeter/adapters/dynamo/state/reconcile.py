"""Reconcile bookkeeping on the state table (:class:`minutemeter.ports.ReconcileStore`), all in
the source's ``RECONCILE#`` partition (``keys.reconcile_partition``): how far a confirmed
reconcile got (it resumes there), the accounts only reconcile has billed, and the audit record
of each run."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from minutemeter.adapters.dynamo.base import DynamoTable
from minutemeter.adapters.dynamo.state.items import _decimals, _plain
from minutemeter.adapters.dynamo.state.keys import (
    ACCOUNT_PREFIX,
    RUN_PREFIX,
    reconcile_partition,
    reconcile_progress_key,
    reconcile_run_key,
    reconciled_account_key,
)
from minutemeter.domain.timeutil import format_instant, parse_rfc3339


class DynamoReconcileStore:
    """:class:`minutemeter.ports.ReconcileStore` on a DynamoDB table."""

    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    # -- progress of a confirmed reconcile --------------------------------------------------
    def get_reconcile_progress(self, source_id: str, reconcile_id: str) -> datetime | None:
        item = self.table.get(reconcile_progress_key(source_id, reconcile_id))
        return parse_rfc3339(item["completed_until"]) if item else None

    def put_reconcile_progress(self, source_id: str, reconcile_id: str, until: datetime) -> None:
        self.table.put({
            **reconcile_progress_key(source_id, reconcile_id),
            "type": "reconcile_progress",
            "completed_until": format_instant(until),
        })

    # -- accounts only reconcile has billed -------------------------------------------------
    def add_reconciled_accounts(self, source_id: str, account_ids: Iterable[str]) -> None:
        items = [
            {**reconciled_account_key(source_id, account), "type": "account",
             "account_id": account}
            for account in account_ids
        ]
        if items:
            self.table.batch_put(items)

    def list_reconciled_accounts(self, source_id: str) -> list[str]:
        items = self.table.query(
            "pk = :pk AND begins_with(sk, :account)",
            {":pk": reconcile_partition(source_id), ":account": ACCOUNT_PREFIX},
        )
        return [str(i["account_id"]) for i in items]

    # -- audit records ------------------------------------------------------------------------
    def record_reconcile(self, result: Mapping[str, object]) -> None:
        item = {
            **reconcile_run_key(str(result["source_id"]), str(result["started_at"]),
                                str(result["run_id"])),
            "type": "reconcile",
            "result": _decimals(dict(result)),
        }
        self.table.put(item)

    def list_reconciles(self, source_id: str, limit: int) -> list[dict[str, object]]:
        items = self.table.query_page(
            "pk = :pk AND begins_with(sk, :run)",
            {":pk": reconcile_partition(source_id), ":run": RUN_PREFIX},
            limit=limit,
            newest_first=True,
        )
        return [_plain(i["result"]) for i in items]
