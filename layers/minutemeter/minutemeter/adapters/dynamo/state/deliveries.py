"""Billing sinks and delivery records on the state table (:class:`minutemeter.ports.DeliveryStore`).

- a sink: ``keys.sink_key`` (pk ``SINKS``, one Query lists them), every field of its
  :class:`~minutemeter.domain.delivery.SinkConfig` (the API key is never stored, only where it
  is: a secret ARN or an environment variable's name);
- a delivery record: ``keys.delivery_key`` (one partition per sink and ledger id), the
  :class:`~minutemeter.ports.DeliveryRecord` with times fixed-width.

The records are what makes delivery exactly once (``service/delivery.py``), so every write is
conditional on the record's ``attempts``:

=================  ================================================  ==========================
write              condition                                         failed condition means
=================  ================================================  ==========================
first claim        ``attribute_not_exists(pk)``                      another sender claimed it
later claim        ``attempts = :expected AND delivery_status      another sender resent, or
                   = :sending``                                      the entry was settled
settle             ``attempts = :attempts AND delivery_status      a later attempt owns the
                   = :sending``                                      record: its outcome wins
=================  ================================================  ==========================

Records have no TTL: a delivered entry must never be sent again, and a backfill may reach back
months. An item is about 250 bytes: one write unit per claim and per settle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from minutemeter.adapters.dynamo.base import DynamoTable, Item
from minutemeter.adapters.dynamo.state.keys import SINKS_PK, delivery_key, sink_key
from minutemeter.domain.delivery import SinkConfig, SinkKind, SinkValue
from minutemeter.domain.errors import UnknownSinkError
from minutemeter.domain.timeutil import format_instant, parse_rfc3339
from minutemeter.ports import DeliveryRecord

SENDING = "sending"


class DynamoDeliveryStore:
    """:class:`minutemeter.ports.DeliveryStore` on a DynamoDB table."""

    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    # -- sinks -------------------------------------------------------------------------------
    def put_sink(self, sink: SinkConfig) -> None:
        self.table.put({
            **sink_key(sink.name), "type": "sink", "name": sink.name, "kind": sink.kind.value,
            "url": sink.url, "meter": sink.meter, "value": sink.value.value,
            "api_key_secret": sink.api_key_secret, "api_key_env": sink.api_key_env,
        })

    def get_sink(self, name: str) -> SinkConfig:
        item = self.table.get(sink_key(name))
        if item is None:
            raise UnknownSinkError(name)
        return _sink_from_item(item)

    def list_sinks(self) -> list[SinkConfig]:
        return [_sink_from_item(i) for i in self.table.query("pk = :pk", {":pk": SINKS_PK})]

    # -- delivery records --------------------------------------------------------------------
    def get_records(self, sink: str, ledger_ids: Iterable[str]) -> Mapping[str, DeliveryRecord]:
        """Strongly consistent: a record written a moment ago by another sender is seen, so
        this sender does not lose a claim it could have known about."""
        keys = [delivery_key(sink, i) for i in ledger_ids]
        found = self.table.batch_get(keys) if keys else []
        return {str(i["ledger_id"]): _record_from_item(i) for i in found}

    def claim(self, record: DeliveryRecord, *, expected_attempts: int | None) -> bool:
        if expected_attempts is None:
            return self.table.put(_record_to_item(record), condition="attribute_not_exists(pk)")
        return self.table.put(
            _record_to_item(record),
            condition="attempts = :expected AND delivery_status = :sending",
            values={":expected": expected_attempts, ":sending": SENDING},
        )

    def settle(self, record: DeliveryRecord) -> None:
        """A settle of an attempt that is no longer the record's latest changes nothing: the
        sender of the later attempt settles it."""
        self.table.put(
            _record_to_item(record),
            condition="attempts = :attempts AND delivery_status = :sending",
            values={":attempts": record.attempts, ":sending": SENDING},
        )


def _record_to_item(record: DeliveryRecord) -> Item:
    return {
        **delivery_key(record.sink, record.ledger_id), "type": "delivery",
        "sink": record.sink, "ledger_id": record.ledger_id, "delivery_status": record.status,
        "attempts": record.attempts,
        "first_attempt_at": format_instant(record.first_attempt_at),
        "maybe_sent_at": (format_instant(record.maybe_sent_at)
                          if record.maybe_sent_at is not None else None),
        "detail": record.detail or None,
    }


def _record_from_item(item: Item) -> DeliveryRecord:
    maybe = item.get("maybe_sent_at")
    return DeliveryRecord(
        sink=str(item["sink"]), ledger_id=str(item["ledger_id"]),
        status=str(item["delivery_status"]), attempts=int(item["attempts"]),
        first_attempt_at=parse_rfc3339(item["first_attempt_at"]),
        maybe_sent_at=parse_rfc3339(maybe) if maybe is not None else None,
        detail=str(item.get("detail") or ""),
    )


def _sink_from_item(item: Item) -> SinkConfig:
    secret, env = item.get("api_key_secret"), item.get("api_key_env")
    return SinkConfig(
        name=str(item["name"]), kind=SinkKind(item["kind"]), url=str(item["url"]),
        meter=str(item["meter"]), value=SinkValue(item["value"]),
        api_key_secret=str(secret) if secret is not None else None,
        api_key_env=str(env) if env is not None else None,
    )
