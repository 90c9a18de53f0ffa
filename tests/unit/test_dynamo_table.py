"""DynamoTable, the one way the adapters talk to DynamoDB, on moto: a failed condition is a
value (nothing written), transactions report their cancellation reasons, Query and Scan read
every page through the client the table holds, and capacity is metered."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto import mock_aws

from minutemeter.adapters.dynamo.base import DynamoTable
from minutemeter.adapters.dynamo.schema import create_tables
from minutemeter.adapters.dynamo.wire import CapacityMeter, Outcome
from minutemeter.domain.errors import StoreError

KEY = {"pk": "P", "sk": "S"}


@dataclass
class CountingClient:
    """Forwards to a DynamoDB client and counts the calls by operation, as the IAM test's
    recorder and the crash scenarios' client do."""

    client: Any
    calls: dict[str, int] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.client, name)
        if name.startswith(("get_", "can_")) or not callable(attribute):
            return attribute

        def call(**kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return attribute(**kwargs)

        return call


@pytest.fixture
def client() -> Iterator[Any]:
    with mock_aws():
        raw = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(raw, ledger_table="ledger", state_table="state")
        yield CountingClient(raw)


@pytest.fixture
def table(client: Any) -> DynamoTable:
    return DynamoTable(client, "ledger", CapacityMeter())


def test_a_conditional_put_that_fails_returns_false_and_writes_nothing(
    table: DynamoTable,
) -> None:
    # GIVEN an item written once
    assert table.put({**KEY, "n": 1}, condition="attribute_not_exists(pk)") is True
    # WHEN the same write-once put comes again with another value
    again = table.put({**KEY, "n": 2}, condition="attribute_not_exists(pk)")
    # THEN it answers False and the first item stands
    assert again is False
    assert table.get(KEY) == {**KEY, "n": 1}


def test_a_conditional_update_answers_with_an_outcome(table: DynamoTable) -> None:
    # GIVEN an item at version 1
    table.put({**KEY, "version": 1})
    # WHEN an update expects version 1 and asks for the new item
    moved = table.update(KEY, "SET version = :next", condition="version = :expected",
                         values={":next": 2, ":expected": 1}, return_new=True)
    # THEN it succeeded with the item as written
    assert moved == Outcome(ok=True, attributes={**KEY, "version": 2})
    # AND the same update again fails as a value, leaving the item alone
    stale = table.update(KEY, "SET version = :next", condition="version = :expected",
                         values={":next": 2, ":expected": 1}, return_new=True)
    assert stale == Outcome(ok=False)
    assert stale.failure is not None  # the refusal, for a typed error to be raised from
    # AND without return_new a success carries no attributes
    assert table.update(KEY, "SET version = :v", values={":v": 3}) == Outcome(ok=True)
    assert table.get(KEY) == {**KEY, "version": 3}


def test_a_conditional_delete_that_fails_returns_false(table: DynamoTable) -> None:
    table.put({**KEY, "holder": "a"})
    assert table.delete(KEY, condition="holder = :me", values={":me": "b"}) is False
    assert table.get(KEY) is not None
    assert table.delete(KEY, condition="holder = :me", values={":me": "a"}) is True
    assert table.get(KEY) is None


def test_a_cancelled_transaction_reports_its_reasons(table: DynamoTable) -> None:
    # GIVEN a lease item with token 7 and a checkpoint already at 10:05
    table.put({"pk": "LEASE", "sk": "STATE", "lease_token": 7})
    table.put({"pk": "CP", "sk": "a", "taken_at": "10:05"})
    newer = "attribute_not_exists(pk) OR taken_at < :taken"
    fence = table.check_action({"pk": "LEASE", "sk": "STATE"},
                               condition="lease_token = :fence", values={":fence": 7})
    # WHEN a transaction puts an older checkpoint under the right fence
    cancelled = table.transact_write([
        table.put_action({"pk": "CP", "sk": "a", "taken_at": "10:01"}, condition=newer,
                         values={":taken": "10:01"}),
        fence,
    ])
    # THEN it was cancelled by the put's condition, not by the fence
    assert not cancelled.ok
    assert cancelled.reasons[0] == "ConditionalCheckFailed"
    assert cancelled.reasons[1:] in {(), ("None",)}  # DynamoDB Local stops at the first
    assert table.get({"pk": "CP", "sk": "a"}) == {"pk": "CP", "sk": "a", "taken_at": "10:05"}
    # AND a newer checkpoint commits
    assert table.transact_write([
        table.put_action({"pk": "CP", "sk": "a", "taken_at": "10:09"}, condition=newer,
                         values={":taken": "10:09"}),
        fence,
    ]) == Outcome(ok=True)
    assert table.get({"pk": "CP", "sk": "a"}) == {"pk": "CP", "sk": "a", "taken_at": "10:09"}


def test_query_and_scan_read_every_page_through_the_tables_client(
    table: DynamoTable, client: CountingClient
) -> None:
    # GIVEN items worth more than one 1 MB page
    filler = "x" * 100_000
    for n in range(14):
        table.put({"pk": "P", "sk": f"{n:02}", "filler": filler})
    table.put({"pk": "OTHER", "sk": "00"})
    # WHEN all of the partition is queried, newest first, and the table scanned for it
    queried = [i["sk"] for i in table.query("pk = :pk", {":pk": "P"}, newest_first=True)]
    scanned = {i["sk"] for i in table.scan("pk = :pk", {":pk": "P"})}
    # THEN every item came back, in order, over more than one request each, and every request
    # went through the client the table holds (what a wrapping client records)
    assert queried == [f"{n:02}" for n in reversed(range(14))]
    assert scanned == {f"{n:02}" for n in range(14)}
    assert client.calls["query"] > 1
    assert client.calls["scan"] > 1
    # AND the pages were metered as reads
    assert table.meter.total_read_units() > 0


def test_a_query_page_is_one_request_of_at_most_limit_items(
    table: DynamoTable, client: CountingClient
) -> None:
    for n in range(5):
        table.put({"pk": "P", "sk": f"{n:02}"})
    page = table.query_page("pk = :pk", {":pk": "P"}, limit=3, newest_first=True)
    assert [i["sk"] for i in page] == ["04", "03", "02"]
    assert client.calls["query"] == 1


def test_writes_are_metered_and_engine_failures_are_store_errors(table: DynamoTable) -> None:
    table.put({**KEY, "n": 1})
    assert table.meter.total_write_units() > 0
    missing = DynamoTable(table.client, "no-such-table")
    with pytest.raises(StoreError, match="put_item on no-such-table failed"):
        missing.put({**KEY, "n": 1}, condition="attribute_not_exists(pk)")
    with pytest.raises(StoreError, match="query on no-such-table failed"):
        list(missing.query("pk = :pk", {":pk": "P"}))
