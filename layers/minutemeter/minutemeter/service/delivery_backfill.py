"""The delivery backfill (``minutemeter sink deliver``, the sink function's daily
``{"backfill": true}``): every ledger entry since a moment, read by Query, delivered through
:func:`minutemeter.service.delivery.deliver_entries`. What the stream missed (the sink down
past its retries, a batch sent to the failure queue) is delivered here; entries already
delivered cost a read of their record and nothing else."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from minutemeter.domain.model import LedgerEntry
from minutemeter.ports import LedgerStore, Sink, SourceStore
from minutemeter.service.delivery import (
    CHUNK_ENTRIES,
    DeliveryDeps,
    DeliveryReport,
    deliver_entries,
)
from minutemeter.service.ledger_export import ExportRequest, export_entries

logger = logging.getLogger(__name__)


def default_since(now: datetime) -> datetime:
    """The backfill's default start: the first instant of the previous UTC month (the month an
    invoice is usually still open for, and every entry a dead-lettered batch can hold)."""
    first = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first - timedelta(days=1)).replace(day=1)


def deliver_since(
    deps: DeliveryDeps, ledger: LedgerStore, sources: SourceStore, sink: Sink, since: datetime
) -> DeliveryReport:
    """Deliver every ledger entry whose minute is at or after ``since`` (UTC) to ``sink``:
    per registered source, month by month with Query (``service.ledger_export``: the month
    index, then one partition per account), ``CHUNK_ENTRIES`` at a time. A source no longer
    registered is not read. Stops early (``stopped_early``) when the budget runs out."""
    report = DeliveryReport(sink.config.name)
    now = deps.clock.now()
    chunk: list[LedgerEntry] = []
    looked_at = 0
    for source in sources.list_sources():
        request = ExportRequest(source_id=source.source_id, since=since)
        for exported in export_entries(ledger, sources, request, now):
            chunk.append(exported.entry)
            if len(chunk) < CHUNK_ENTRIES:
                continue
            looked_at += _backfill_chunk(deps, sink, chunk, report, looked_at)
            chunk = []
            if report.stopped_early:
                return report
    if chunk:
        _backfill_chunk(deps, sink, chunk, report, looked_at)
    return report


def _backfill_chunk(deps: DeliveryDeps, sink: Sink, chunk: Sequence[LedgerEntry],
                    report: DeliveryReport, before: int) -> int:
    deliver_entries(deps, sink, chunk, report)
    counts = {k: v for k, v in report.to_json().items() if not isinstance(v, list)}
    logger.info("backfill progress", extra={"sink": sink.config.name,
                                            "entries": before + len(chunk), **counts})
    return len(chunk)
