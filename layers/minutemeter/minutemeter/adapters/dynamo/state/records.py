"""Quarantine and reset records on the state table (:class:`minutemeter.ports.RecordStore`).

One item per quarantined sample (``keys.quarantine_key``, keyed by its content digest) and per
counter reset (``keys.reset_key``), so writing a record again writes the same item. They
expire (``expires_at``, the table's TTL attribute).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from minutemeter.adapters.dynamo.base import DynamoTable, Item
from minutemeter.adapters.dynamo.state.items import _plain
from minutemeter.adapters.dynamo.state.keys import quarantine_key, record_partition, reset_key
from minutemeter.domain.model import Quarantined, ResetEvent
from minutemeter.domain.timeutil import epoch_seconds, format_instant


class DynamoRecordStore:
    """:class:`minutemeter.ports.RecordStore` on a DynamoDB table."""

    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    def put_records(
        self,
        source_id: str,
        *,
        quarantined: Sequence[Quarantined],
        resets: Sequence[ResetEvent],
        run_id: str,
        at: datetime,
        expires_at: datetime,
    ) -> None:
        common = {"source_id": source_id, "run_id": run_id, "recorded_at": format_instant(at),
                  "expires_at": epoch_seconds(expires_at)}
        items: list[Item] = [
            {
                **quarantine_key(source_id, q.taken_at, q.digest),
                "type": "quarantine",
                **common,
                "reason": q.reason,
                "taken_at": q.taken_at,
                "account_id": q.account_id,
                "raw": q.raw,
            }
            for q in quarantined
        ]
        items.extend(
            {
                **reset_key(source_id, r.taken_at, r.node_id, r.account_id),
                "type": "reset",
                **common,
                "node_id": r.node_id,
                "account_id": r.account_id,
                "taken_at": format_instant(r.taken_at),
                "previous_bytes": r.previous_bytes,
                "current_bytes": r.current_bytes,
                "policy": r.policy.value,
                "billed_bytes": r.billed_bytes,
            }
            for r in resets
        )
        if items:
            self.table.batch_put(items)

    def list_records(self, source_id: str, kind: str, limit: int) -> list[dict[str, object]]:
        items = self.table.query_page(
            "pk = :pk", {":pk": record_partition(source_id, kind)}, limit=limit,
            newest_first=True,
        )
        return [
            {k: _plain(v) for k, v in item.items() if k not in {"pk", "sk", "expires_at"}}
            for item in items
        ]
