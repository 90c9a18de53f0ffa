"""The clock verdict on the state table (:class:`minutemeter.ports.ClockVerdictStore`): one item
(``keys.VERDICT_KEY``), replaced by each drift check and read by the collectors' clock guard."""

from __future__ import annotations

from decimal import Decimal

from minutemeter.adapters.dynamo.base import DynamoTable
from minutemeter.adapters.dynamo.state.keys import VERDICT_KEY
from minutemeter.domain.model import ClockVerdict
from minutemeter.domain.timeutil import format_instant, parse_rfc3339


class DynamoClockVerdictStore:
    """:class:`minutemeter.ports.ClockVerdictStore` on a DynamoDB table."""

    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    def put_clock_verdict(self, verdict: ClockVerdict) -> None:
        item = {
            **VERDICT_KEY,
            "type": "clock_verdict",
            "measured_at": format_instant(verdict.measured_at),
            "status": verdict.status,
            "offset_ms": verdict.offset_ms,
            "bound_ms": verdict.bound_ms,
            "valid_sources": verdict.valid_sources,
            "detail": verdict.detail,
        }
        self.table.put(item)

    def get_clock_verdict(self) -> ClockVerdict | None:
        """An eventually consistent read: a verdict a few seconds old is as good."""
        item = self.table.get(VERDICT_KEY, consistent=False)
        if item is None:
            return None
        return ClockVerdict(
            measured_at=parse_rfc3339(item["measured_at"]),
            status=str(item["status"]),
            offset_ms=Decimal(item["offset_ms"]),
            bound_ms=Decimal(item["bound_ms"]),
            valid_sources=int(item["valid_sources"]),
            detail=str(item.get("detail", "")),
        )
