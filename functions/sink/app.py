"""Sink Lambda: delivers new ledger entries to every registered billing sink, exactly once.

Two events:

- a DynamoDB Stream batch of the ledger table (``NEW_IMAGE``; the event source mapping's filter
  passes only INSERTs of entries). The whole batch is delivered at once, per sink (one records
  read and one send per 100 entries), then Powertools' ``BatchProcessor`` reports every record
  whose entry is not settled on some sink (retry, outcome unknown inside the dedup window, in
  flight with another sender) as a batch item failure: Lambda retries from it. An entry of an
  account without a billing customer is not a failure (a retry cannot help until an operator
  sets ``--customer``); the scheduled backfill delivers it then.
- ``{"backfill": true, "since": "<RFC 3339, optional>"}`` from the EventBridge schedule:
  ``sink deliver`` for every sink (default since: the first day of the previous month), within
  the invocation's time. What the stream missed (the sink down past the stream's 24 hours, a
  batch sent to the on-failure queue) is delivered here.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from minutemeter.adapters.dynamo.ledger_items import entry_from_item
from minutemeter.adapters.dynamo.wire import from_wire
from minutemeter.adapters.system import LambdaBudget
from minutemeter.bootstrap import App, warm_app
from minutemeter.domain.errors import InputError, MinutemeterError
from minutemeter.domain.model import LedgerEntry
from minutemeter.domain.timeutil import parse_rfc3339
from minutemeter.ports import Budget
from minutemeter.service.delivery import DeliveryReport, deliver_entries
from minutemeter.service.delivery_backfill import default_since, deliver_since

logger = Logger()
_app: App | None = None  # wired by the first invocation: bootstrap.warm_app


class UndeliveredError(MinutemeterError):
    """A stream record whose entry some sink has not settled yet: retry it."""


def stream_entries(event: dict[str, Any]) -> dict[str, LedgerEntry | None]:
    """The ledger entry of each stream record, by sequence number; None for a record that is
    not an entry. A record that claims to be one and does not parse raises: the batch fails,
    is bisected and the record ends in the on-failure queue."""
    found: dict[str, LedgerEntry | None] = {}
    for record in event.get("Records", []):
        change = record.get("dynamodb", {})
        image = from_wire(change.get("NewImage") or {})
        entry = entry_from_item(image) if image.get("type") == "entry" else None
        found[str(change.get("SequenceNumber"))] = entry
    return found


def deliver_batch(app: App, event: dict[str, Any], budget: Budget,
                  context: LambdaContext | None = None) -> dict[str, Any]:
    """Deliver a stream batch to every sink; the partial batch response."""
    entries = stream_entries(event)
    delivering = [e for e in entries.values() if e is not None]
    unsettled: set[str] = set()
    for config in app.state.deliveries.list_sinks():
        report = deliver_entries(app.delivery_deps(budget), app.sinks(config), delivering)
        unsettled |= report.pending
        _report(report)
    failed = {seq for seq, entry in entries.items()
              if entry is not None and entry.ledger_id in unsettled}

    def record_handler(record: DynamoDBRecord) -> None:
        if record.dynamodb is not None and record.dynamodb.sequence_number in failed:
            raise UndeliveredError(f"sequence {record.dynamodb.sequence_number} not settled")

    processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
    return dict(process_partial_response(event=event, record_handler=record_handler,
                                         processor=processor, context=context))


def backfill(app: App, event: dict[str, Any], budget: Budget) -> dict[str, Any]:
    """``sink deliver`` of every sink from ``since``."""
    text = event.get("since")
    if text is not None and not isinstance(text, str):
        raise InputError("backfill event: since must be an RFC 3339 string")
    since = parse_rfc3339(text, what="since") if text else default_since(app.clock.now())
    reports = [deliver_since(app.delivery_deps(budget), app.ledger, app.state.sources,
                             app.sinks(c), since) for c in app.state.deliveries.list_sinks()]
    for report in reports:
        _report(report)
    return {"since": since.isoformat(), "sinks": [r.to_json() for r in reports],
            "settled": all(r.settled for r in reports)}


def _report(report: DeliveryReport) -> None:
    """One log line per sink; a warning when something is left (retry, rejected, unknown)."""
    level = logger.info if report.settled and not (report.rejected_ids or report.unknown_ids) \
        else logger.warning
    level("sink delivery", extra={"delivery": report.to_json()})


@logger.inject_lambda_context(log_event=False, clear_state=True)
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise InputError("sink event must be a JSON object")
    app = warm_app(globals())
    if event.get("backfill") is True:
        return backfill(app, event, LambdaBudget(context))
    return deliver_batch(app, event, LambdaBudget(context), context)
