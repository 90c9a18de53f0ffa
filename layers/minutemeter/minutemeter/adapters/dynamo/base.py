"""The one way the DynamoDB adapters talk to a table (:class:`DynamoTable`): single items,
transactions, batches, queries and scans. What goes over the wire (attribute values, error codes,
consumed capacity, :class:`Outcome`) is ``adapters/dynamo/wire.py``.

Every request goes through a :class:`DynamoTable`: it names its table, asks for
``ReturnConsumedCapacity`` and meters it, turns engine failures into :class:`StoreError`, and
answers a failed write condition with a value (``False``, or an :class:`Outcome` with ``ok``
false) rather than an exception, so callers branch on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from minutemeter.adapters.dynamo.wire import (
    CONDITION_FAILED,
    CONDITION_FAILURES,
    TRANSACTION_CANCELED,
    CapacityMeter,
    Item,
    Outcome,
    error_code,
    expression_values,
    from_wire,
    to_wire,
)
from minutemeter.domain.errors import StoreError

if TYPE_CHECKING:  # the stubs are a dev dependency; the Lambda layer runs without them
    from typing import NotRequired, TypedDict

    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.literals import ReturnValuesOnConditionCheckFailureType
    from mypy_boto3_dynamodb.type_defs import (
        DeleteItemInputTypeDef,
        PutItemInputTypeDef,
        QueryInputTypeDef,
        ScanInputTypeDef,
        TransactWriteItemTypeDef,
        UniversalAttributeValueTypeDef,
        UpdateItemInputTypeDef,
    )

    class _ConditionedAction(TypedDict):
        """The fields a transaction's Put, Delete and ConditionCheck share (all but the item
        or key)."""

        TableName: str
        ConditionExpression: str
        ExpressionAttributeNames: NotRequired[Mapping[str, str]]
        ExpressionAttributeValues: NotRequired[Mapping[str, UniversalAttributeValueTypeDef]]
        ReturnValuesOnConditionCheckFailure: NotRequired[ReturnValuesOnConditionCheckFailureType]

    class _WriteCondition(TypedDict, total=False):
        """The condition of a PutItem, UpdateItem or DeleteItem request."""

        ConditionExpression: str
        ExpressionAttributeValues: Mapping[str, UniversalAttributeValueTypeDef]

__all__ = ["DynamoTable", "Item"]  # Item: the type of every item a table answers

BATCH_GET_LIMIT = 100
BATCH_WRITE_LIMIT = 25
MAX_UNPROCESSED_ROUNDS = 8


class DynamoTable:
    """One table through the low-level client, with capacity metering and batch helpers.

    Engine failures (missing table, throttling after botocore's retries, connection errors)
    raise :class:`StoreError` naming the operation and the table; a failed condition is an
    answer, returned as a value.
    """

    def __init__(
        self, client: DynamoDBClient, name: str, meter: CapacityMeter | None = None
    ) -> None:
        self.client = client
        self.name = name
        self.meter = meter or CapacityMeter()

    @contextmanager
    def _request(self, operation: str, *, write: bool) -> Iterator[None]:
        """Translate the failures of one request; a failed condition passes as ``ClientError``
        (its capacity metered: failed conditions are charged too)."""
        try:
            yield
        except ClientError as exc:
            self.meter.record(exc.response, write=write)
            if error_code(exc) in CONDITION_FAILURES:
                raise  # an answer the helpers below interpret, not a failure
            raise StoreError(
                f"DynamoDB {operation} on {self.name} failed: {error_code(exc)}: "
                f"{exc.response.get('Error', {}).get('Message', '')}"
            ) from exc
        except BotoCoreError as exc:  # connection, timeout, credentials: after botocore's retries
            raise StoreError(f"DynamoDB {operation} on {self.name} failed: {exc}") from exc

    # -- single items ------------------------------------------------------------------------
    def get(self, key: Mapping[str, Any], *, consistent: bool = True) -> Item | None:
        with self._request("get_item", write=False):
            response = self.client.get_item(
                TableName=self.name, Key=to_wire(key), ConsistentRead=consistent,
                ReturnConsumedCapacity="TOTAL",
            )
        self.meter.record(response, write=False)
        item = response.get("Item")
        return from_wire(item) if item else None

    def put(
        self, item: Mapping[str, Any], *, condition: str | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> bool:
        """PutItem of ``item`` (``None`` attributes left out); ``False`` if ``condition``
        (with expression ``values``) failed and nothing was written."""
        request: PutItemInputTypeDef = {
            "TableName": self.name, "Item": to_wire(item), "ReturnConsumedCapacity": "TOTAL",
        }
        _add_condition(request, condition, values)
        return self._write("put_item", lambda: self.client.put_item(**request)).ok

    def update(
        self, key: Mapping[str, Any], expression: str, *, condition: str | None = None,
        values: Mapping[str, Any] | None = None, return_new: bool = False,
        names: Mapping[str, str] | None = None,
    ) -> Outcome:
        """UpdateItem of ``key`` with the update ``expression``; ``Outcome.ok`` is false if
        ``condition`` failed. With ``return_new`` (``ReturnValues=ALL_NEW``) the outcome of a
        success carries the item as written. ``names``: expression attribute names (``#type``
        for a reserved word)."""
        request: UpdateItemInputTypeDef = {
            "TableName": self.name, "Key": to_wire(key), "UpdateExpression": expression,
            "ReturnConsumedCapacity": "TOTAL",
        }
        if names:
            request["ExpressionAttributeNames"] = names
        if return_new:
            request["ReturnValues"] = "ALL_NEW"
        _add_condition(request, condition, values)
        return self._write("update_item", lambda: self.client.update_item(**request))

    def delete(
        self, key: Mapping[str, Any], *, condition: str | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> bool:
        """DeleteItem of ``key``; ``False`` if ``condition`` failed and nothing was deleted."""
        request: DeleteItemInputTypeDef = {
            "TableName": self.name, "Key": to_wire(key), "ReturnConsumedCapacity": "TOTAL",
        }
        _add_condition(request, condition, values)
        return self._write("delete_item", lambda: self.client.delete_item(**request)).ok

    def _write(self, operation: str, send: Callable[[], Mapping[str, Any]]) -> Outcome:
        """One conditional single-item write: ``ok`` false if its condition failed, else the
        item as written when the request asked for it (``ReturnValues``)."""
        try:
            with self._request(operation, write=True):
                response = send()
        except ClientError as exc:
            return Outcome(ok=_condition_failed(exc), failure=exc)
        self.meter.record(response, write=True)
        return Outcome(ok=True, attributes=from_wire(response.get("Attributes") or {}))

    # -- transactions ------------------------------------------------------------------------
    def put_action(
        self, item: Mapping[str, Any], *, condition: str, values: Mapping[str, Any]
    ) -> TransactWriteItemTypeDef:
        """A conditional Put on this table, for :meth:`transact_write`."""
        return {"Put": {"Item": to_wire(item), **self._conditioned(condition, values)}}

    def delete_action(
        self, key: Mapping[str, Any], *, condition: str, values: Mapping[str, Any]
    ) -> TransactWriteItemTypeDef:
        """A conditional Delete on this table, for :meth:`transact_write`."""
        return {"Delete": {"Key": to_wire(key), **self._conditioned(condition, values)}}

    def check_action(
        self, key: Mapping[str, Any], *, condition: str, values: Mapping[str, Any]
    ) -> TransactWriteItemTypeDef:
        """A ConditionCheck of an item of this table, for :meth:`transact_write`."""
        return {"ConditionCheck": {"Key": to_wire(key), **self._conditioned(condition, values)}}

    def _conditioned(self, condition: str, values: Mapping[str, Any]) -> _ConditionedAction:
        """The table and condition of a transaction action, whatever it does."""
        action: _ConditionedAction = {"TableName": self.name, "ConditionExpression": condition}
        if values:  # DynamoDB refuses an empty ExpressionAttributeValues
            action["ExpressionAttributeValues"] = expression_values(values)
        return action

    def transact_write(self, actions: Sequence[TransactWriteItemTypeDef]) -> Outcome:
        """TransactWriteItems of ``actions`` (each names its table, see :meth:`put_action`).
        A cancelled transaction is an outcome with ``ok`` false and its ``reasons``; one
        cancelled without reasons is a :class:`StoreError`."""
        try:
            with self._request("transact_write_items", write=True):
                response = self.client.transact_write_items(
                    TransactItems=actions, ReturnConsumedCapacity="TOTAL"
                )
        except ClientError as exc:
            reasons = exc.response.get("CancellationReasons") or []
            if error_code(exc) != TRANSACTION_CANCELED or not reasons:
                raise StoreError(
                    f"DynamoDB transact_write_items on {self.name} failed: {exc}"
                ) from exc
            codes = tuple(str(r.get("Code", "None")) for r in reasons)
            return Outcome(ok=False, reasons=codes, failure=exc)
        self.meter.record(response, write=True)
        return Outcome(ok=True)

    # -- batches -----------------------------------------------------------------------------
    def batch_get(
        self, keys: Sequence[Mapping[str, Any]], *, projection: str | None = None,
        consistent: bool = True,
    ) -> list[Item]:
        """BatchGetItem over any number of keys, retrying unprocessed keys; strongly consistent
        unless ``consistent`` is False (half the read units)."""
        found: list[Item] = []
        unique = list({(k["pk"], k["sk"]): k for k in keys}.values())
        for start in range(0, len(unique), BATCH_GET_LIMIT):
            request: dict[str, Any] = {
                "Keys": [to_wire(k) for k in unique[start : start + BATCH_GET_LIMIT]],
                "ConsistentRead": consistent,
            }
            if projection:
                request["ProjectionExpression"] = projection
            responses = self._until_processed(
                "batch_get_item", {self.name: request},
                lambda pending: self.client.batch_get_item(
                    RequestItems=pending, ReturnConsumedCapacity="TOTAL"
                ),
                write=False, left="UnprocessedKeys",
                refusal=f"BatchGetItem on {self.name} left keys unprocessed",
            )
            for response in responses:
                found.extend(from_wire(i) for i in response.get("Responses", {}).get(self.name, []))
        return found

    def batch_put(self, items: Sequence[Mapping[str, Any]]) -> None:
        """Unconditional BatchWriteItem of ``items`` (idempotent records only)."""
        unique = list({(i["pk"], i["sk"]): i for i in items}.values())
        for start in range(0, len(unique), BATCH_WRITE_LIMIT):
            requests = [
                {"PutRequest": {"Item": to_wire(i)}}
                for i in unique[start : start + BATCH_WRITE_LIMIT]
            ]
            for _ in self._until_processed(
                "batch_write_item", {self.name: requests},
                lambda pending: self.client.batch_write_item(
                    RequestItems=pending, ReturnConsumedCapacity="TOTAL"
                ),
                write=True, left="UnprocessedItems",
                refusal=f"BatchWriteItem on {self.name} left items unprocessed",
            ):
                pass

    def _until_processed(
        self, operation: str, pending: Mapping[str, Any],
        send: Callable[[Mapping[str, Any]], Mapping[str, Any]], *, write: bool, left: str,
        refusal: str,
    ) -> Iterator[Mapping[str, Any]]:
        """The response to ``pending`` and to each resend of what it left unprocessed (the
        response's ``left``), backing off between rounds; a :class:`StoreError` saying
        ``refusal`` when ``MAX_UNPROCESSED_ROUNDS`` still leave some."""
        for round_ in range(MAX_UNPROCESSED_ROUNDS):
            with self._request(operation, write=write):
                response = send(pending)
            self.meter.record(response, write=write)
            yield response
            pending = response.get(left) or {}
            if not pending:
                return
            time.sleep(min(0.05 * 2**round_, 1.0))
        raise StoreError(refusal)

    # -- reads of many items -----------------------------------------------------------------
    def query(
        self, key_condition: str, values: Mapping[str, Any], *,
        filter_expression: str | None = None, newest_first: bool = False, consistent: bool = True,
        projection: str | None = None,
    ) -> Iterator[Item]:
        """Every item of a Query, in sort key order (descending with ``newest_first``), read
        page by page as the caller iterates (stop early and no further page is read).
        ``projection`` narrows what is returned, not what is billed (the whole items read)."""
        request: QueryInputTypeDef = {
            "TableName": self.name,
            "KeyConditionExpression": key_condition,
            "ExpressionAttributeValues": expression_values(values),
            "ConsistentRead": consistent,
            "ReturnConsumedCapacity": "TOTAL",
        }
        if filter_expression is not None:
            request["FilterExpression"] = filter_expression
        if projection is not None:
            request["ProjectionExpression"] = projection
        if newest_first:
            request["ScanIndexForward"] = False
        return self._items("query", lambda page: self.client.query(**request, **page))

    def query_page(
        self, key_condition: str, values: Mapping[str, Any], *, limit: int,
        newest_first: bool = False,
    ) -> list[Item]:
        """The first page of a Query: at most ``limit`` items, one (eventually consistent)
        request."""
        request: QueryInputTypeDef = {
            "TableName": self.name,
            "KeyConditionExpression": key_condition,
            "ExpressionAttributeValues": expression_values(values),
            "Limit": limit,
            "ReturnConsumedCapacity": "TOTAL",
        }
        if newest_first:
            request["ScanIndexForward"] = False
        with self._request("query", write=False):
            response = self.client.query(**request)
        self.meter.record(response, write=False)
        return [from_wire(i) for i in response.get("Items", [])]

    def scan(
        self, filter_expression: str, values: Mapping[str, Any], *, consistent: bool = True
    ) -> Iterator[Item]:
        """Every item of the table that passes ``filter_expression``, page by page as the
        caller iterates. Reads (and is charged for) the whole table."""
        request: ScanInputTypeDef = {
            "TableName": self.name,
            "FilterExpression": filter_expression,
            "ExpressionAttributeValues": expression_values(values),
            "ConsistentRead": consistent,
            "ReturnConsumedCapacity": "TOTAL",
        }
        return self._items("scan", lambda page: self.client.scan(**request, **page))

    def _items(
        self, operation: str, read: Callable[[dict[str, Any]], Mapping[str, Any]]
    ) -> Iterator[Item]:
        """The items of every page ``read`` returns, following ``LastEvaluatedKey``; each page
        metered, its failures translated.

        Not boto3's paginator: it calls the client object that created it, so a wrapper around
        the client (the IAM test records calls through one, the crash scenarios count writes
        through one) would never see its pages, and making it would take botocore internals.
        """
        page: dict[str, Any] = {}
        while True:
            with self._request(operation, write=False):
                response = read(page)
            self.meter.record(response, write=False)
            for item in response.get("Items", []):
                yield from_wire(item)
            last = response.get("LastEvaluatedKey")
            if not last:
                return
            page = {"ExclusiveStartKey": last}


def _add_condition(
    request: _WriteCondition, condition: str | None, values: Mapping[str, Any] | None
) -> None:
    """Add the condition of a single-item write and its expression values, those given."""
    if condition is not None:
        request["ConditionExpression"] = condition
    if values is not None:
        request["ExpressionAttributeValues"] = expression_values(values)


def _condition_failed(exc: ClientError) -> bool:
    """``False`` for a failed condition (the answer the write helpers return); re-raise any
    other code ``DynamoTable._request`` let through."""
    if error_code(exc) != CONDITION_FAILED:
        raise exc
    return False


