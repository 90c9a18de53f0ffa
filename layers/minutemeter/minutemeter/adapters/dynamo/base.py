"""Shared plumbing for the DynamoDB adapters: (de)serialisation, capacity metering, batching."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from minutemeter.domain.errors import StoreError

_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()

Item = dict[str, Any]
WireItem = dict[str, Any]

BATCH_GET_LIMIT = 100
BATCH_WRITE_LIMIT = 25
MAX_UNPROCESSED_ROUNDS = 8
CONDITION_FAILURES = frozenset(
    {"ConditionalCheckFailedException", "TransactionCanceledException"}
)
_WRITE_OPERATIONS = frozenset(
    {"put_item", "update_item", "delete_item", "batch_write_item", "transact_write_items"}
)


def to_wire(item: Mapping[str, Any]) -> WireItem:
    """Python values (str, int, Decimal, bool, list, dict, None) to DynamoDB attribute values."""
    return {k: _SERIALIZER.serialize(v) for k, v in item.items() if v is not None}


def from_wire(item: Mapping[str, Any]) -> Item:
    return {k: _DESERIALIZER.deserialize(v) for k, v in item.items()}


def values(mapping: Mapping[str, Any]) -> WireItem:
    """Expression attribute values, serialised."""
    return {k: _SERIALIZER.serialize(v) for k, v in mapping.items()}


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@dataclass
class CapacityMeter:
    """Sums the ``ConsumedCapacity`` DynamoDB reports, per table. Thread-safe."""

    read_units: dict[str, float] = field(default_factory=dict)
    write_units: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, response: Mapping[str, Any], *, write: bool) -> None:
        """Add the units of one response; ``write`` says which kind the operation was."""
        consumed = response.get("ConsumedCapacity")
        if consumed is None:
            return
        entries = consumed if isinstance(consumed, list) else [consumed]
        bucket = self.write_units if write else self.read_units
        with self._lock:
            for entry in entries:
                table = str(entry.get("TableName", "?"))
                units = float(entry.get("CapacityUnits", 0) or 0)
                bucket[table] = bucket.get(table, 0.0) + units

    def total_write_units(self) -> float:
        with self._lock:
            return sum(self.write_units.values())

    def total_read_units(self) -> float:
        with self._lock:
            return sum(self.read_units.values())


class DynamoTable:
    """One table through the low-level client, with capacity metering and batch helpers."""

    def __init__(self, client: Any, name: str, meter: CapacityMeter | None = None) -> None:
        self.client = client
        self.name = name
        self.meter = meter or CapacityMeter()

    def call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """Call ``operation`` (``get_item``, ``put_item``, ...) with ``ReturnConsumedCapacity``.

        A failed condition comes back as the ``ClientError`` (callers read its code); any other
        failure becomes a :class:`StoreError`.
        """
        method = getattr(self.client, operation)
        write = operation in _WRITE_OPERATIONS
        try:
            response: dict[str, Any] = method(ReturnConsumedCapacity="TOTAL", **kwargs)
        except ClientError as exc:
            self.meter.record(exc.response, write=write)  # failed conditions are charged too
            if error_code(exc) in CONDITION_FAILURES:
                raise  # an answer the adapters interpret, not a failure
            raise StoreError(
                f"DynamoDB {operation} on {self.name} failed: {error_code(exc)}: "
                f"{exc.response.get('Error', {}).get('Message', '')}"
            ) from exc
        except BotoCoreError as exc:  # connection, timeout, credentials: after botocore's retries
            raise StoreError(f"DynamoDB {operation} on {self.name} failed: {exc}") from exc
        self.meter.record(response, write=write)
        return response

    def get(self, key: Mapping[str, Any], *, consistent: bool = True) -> Item | None:
        response = self.call(
            "get_item", TableName=self.name, Key=to_wire(key), ConsistentRead=consistent
        )
        item = response.get("Item")
        return from_wire(item) if item else None

    def batch_get(
        self, keys: Sequence[Mapping[str, Any]], *, projection: str | None = None
    ) -> list[Item]:
        """Strongly consistent BatchGetItem over any number of keys, retrying unprocessed keys."""
        found: list[Item] = []
        unique = list({(k["pk"], k["sk"]): k for k in keys}.values())
        for start in range(0, len(unique), BATCH_GET_LIMIT):
            request: dict[str, Any] = {
                "Keys": [to_wire(k) for k in unique[start : start + BATCH_GET_LIMIT]],
                "ConsistentRead": True,
            }
            if projection:
                request["ProjectionExpression"] = projection
            pending: dict[str, Any] = {self.name: request}
            for round_ in range(MAX_UNPROCESSED_ROUNDS):
                response = self.call("batch_get_item", RequestItems=pending)
                found.extend(from_wire(i) for i in response.get("Responses", {}).get(self.name, []))
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
                time.sleep(min(0.05 * 2**round_, 1.0))
            else:
                raise StoreError(f"BatchGetItem on {self.name} left keys unprocessed")
        return found

    def batch_put(self, items: Sequence[Mapping[str, Any]]) -> None:
        """Unconditional BatchWriteItem of ``items`` (idempotent records only)."""
        unique = list({(i["pk"], i["sk"]): i for i in items}.values())
        for start in range(0, len(unique), BATCH_WRITE_LIMIT):
            requests = [
                {"PutRequest": {"Item": to_wire(i)}}
                for i in unique[start : start + BATCH_WRITE_LIMIT]
            ]
            pending: dict[str, Any] = {self.name: requests}
            for round_ in range(MAX_UNPROCESSED_ROUNDS):
                response = self.call("batch_write_item", RequestItems=pending)
                pending = response.get("UnprocessedItems") or {}
                if not pending:
                    break
                time.sleep(min(0.05 * 2**round_, 1.0))
            else:
                raise StoreError(f"BatchWriteItem on {self.name} left items unprocessed")

    def query(self, **kwargs: Any) -> Iterator[Item]:
        """All items of a Query (or Scan when ``scan=True``), page by page."""
        operation = "scan" if kwargs.pop("scan", False) else "query"
        start_key: dict[str, Any] | None = None
        while True:
            request = dict(kwargs, TableName=self.name)
            if start_key:
                request["ExclusiveStartKey"] = start_key
            response = self.call(operation, **request)
            for item in response.get("Items", []):
                yield from_wire(item)
            start_key = response.get("LastEvaluatedKey")
            if not start_key:
                return
