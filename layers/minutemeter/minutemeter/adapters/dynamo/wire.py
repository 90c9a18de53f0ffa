"""What crosses the wire to and from DynamoDB, for :class:`~.base.DynamoTable`: attribute values
(de)serialised, the error codes of a refused write, the consumed capacity each response reports
(:class:`CapacityMeter`) and what a conditional write did (:class:`Outcome`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()

Item = dict[str, Any]
WireItem = dict[str, Any]

CONDITION_FAILED = "ConditionalCheckFailedException"
TRANSACTION_CANCELED = "TransactionCanceledException"
CONDITION_FAILURES = frozenset({CONDITION_FAILED, TRANSACTION_CANCELED})


def to_wire(item: Mapping[str, Any]) -> WireItem:
    """Python values (str, int, Decimal, bool, list, dict, None) to DynamoDB attribute values."""
    return {k: _SERIALIZER.serialize(v) for k, v in item.items() if v is not None}


def from_wire(item: Mapping[str, Any]) -> Item:
    return {k: _DESERIALIZER.deserialize(v) for k, v in item.items()}


def expression_values(mapping: Mapping[str, Any]) -> WireItem:
    """Expression attribute values, serialised (``None`` kept: it is a NULL value here)."""
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


@dataclass(frozen=True)
class Outcome:
    """What a conditional update or a transaction did.

    ``ok`` is false when a condition failed and nothing was written; ``attributes`` is the item
    as written when ``ReturnValues`` asked for it, else empty; ``reasons`` are a cancelled
    transaction's reason codes, one per action in order (``"None"`` for one that did not fail;
    some engines stop at the first failed one). ``failure`` is the refusal DynamoDB sent, for
    the typed error a caller raises from it (``raise LeaseLostError(...) from outcome.failure``).
    """

    ok: bool
    attributes: Item = field(default_factory=dict)
    reasons: tuple[str, ...] = ()
    failure: ClientError | None = field(default=None, compare=False, repr=False)
