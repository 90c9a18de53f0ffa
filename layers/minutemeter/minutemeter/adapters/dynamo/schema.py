"""Table definitions for local use (``minutemeter tables create``); template.yaml declares the
same keys and TTL for AWS."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from minutemeter.adapters.dynamo.wire import error_code

if TYPE_CHECKING:  # the stubs are a dev dependency; the Lambda layer runs without them
    from mypy_boto3_dynamodb import DynamoDBClient

TTL_ATTRIBUTE = "expires_at"


def create_tables(
    client: DynamoDBClient, *, ledger_table: str, state_table: str
) -> list[dict[str, str]]:
    """Create both tables if missing (idempotent); wait until they are active."""
    report = []
    for name, ttl in ((ledger_table, False), (state_table, True)):
        status = _create(client, name)
        _wait_active(client, name)
        if ttl:
            _enable_ttl(client, name)
        report.append({"table": name, "status": status})
    return report


def _create(client: DynamoDBClient, name: str) -> str:
    try:
        client.create_table(
            TableName=name,
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    except ClientError as exc:
        if error_code(exc) == "ResourceInUseException":
            return "exists"
        raise
    return "created"


def _wait_active(client: DynamoDBClient, name: str, timeout_seconds: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        status = client.describe_table(TableName=name)["Table"]["TableStatus"]
        if status == "ACTIVE":
            return
        time.sleep(0.2)
    raise TimeoutError(f"table {name} did not become ACTIVE within {timeout_seconds} s")


def _enable_ttl(client: DynamoDBClient, name: str) -> None:
    try:
        current = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if current.get("TimeToLiveStatus") in {"ENABLED", "ENABLING"}:
            return
        client.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
        )
    except ClientError as exc:
        if error_code(exc) not in {"ValidationException", "UnknownOperationException"}:
            raise
