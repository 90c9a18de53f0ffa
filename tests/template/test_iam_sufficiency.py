"""The functions' policies are not only narrow but sufficient: every DynamoDB call the code
makes, on the partitions it makes them, is allowed by the template.

The calls are recorded from real runs (collector, reconcile, status, drift verdict) against moto
through a client that notes each operation, its table and the partition keys it touches. A
policy written by hand from memory missed BatchWriteItem once (the collector would have failed
with AccessDenied on its first commit); this test is what catches that.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

import boto3
import pytest
from moto import mock_aws

from minutemeter.adapters.dynamo.ledger import DynamoLedgerStore
from minutemeter.adapters.dynamo.schema import create_tables
from minutemeter.adapters.dynamo.state.sources import DynamoSourceStore
from minutemeter.bootstrap import App, bootstrap
from minutemeter.domain.model import ClockVerdict, SourceConfig
from minutemeter.local.exporter import SampleExporter, SyntheticCounters, account_ids
from minutemeter.service.audit import audit_recent_months
from minutemeter.service.collect import collect_source
from minutemeter.service.delivery import deliver_entries
from minutemeter.service.delivery_backfill import default_since, deliver_since
from minutemeter.service.operations import check_health, source_document, status_document
from minutemeter.service.reconcile import ReconcileRequest, reconcile
from minutemeter.settings import Settings
from tests.support.clock import FakeClock
from tests.support.sinks import PROFILE, STRIPE, FakeSink

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
LEDGER, STATE = "iam-ledger", "iam-state"
IAM_ACTION = {
    "get_item": "GetItem", "put_item": "PutItem", "update_item": "UpdateItem",
    "batch_get_item": "BatchGetItem", "batch_write_item": "BatchWriteItem", "query": "Query",
    "scan": "Scan", "delete_item": "DeleteItem",
}


@dataclass
class Recorder:
    """Wraps a DynamoDB client; records (IAM action, table, partition key or None)."""

    client: Any
    calls: set[tuple[str, str, str | None]] = field(default_factory=set)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)
        if name == "transact_write_items":
            def transact(**kwargs: Any) -> Any:
                for action in kwargs["TransactItems"]:
                    (kind, body), = action.items()
                    iam = {"Put": "PutItem", "ConditionCheck": "ConditionCheckItem",
                           "Update": "UpdateItem", "Delete": "DeleteItem"}[kind]
                    key = body.get("Item") or body.get("Key")
                    self.calls.add((iam, body["TableName"], key["pk"]["S"]))
                return method(**kwargs)
            return transact
        if name not in IAM_ACTION:
            return method

        def call(**kwargs: Any) -> Any:
            for table, pk in _targets(name, kwargs):
                self.calls.add((IAM_ACTION[name], table, pk))
            return method(**kwargs)
        return call


def _targets(operation: str, kwargs: dict[str, Any]) -> Iterator[tuple[str, str | None]]:
    if operation in {"batch_get_item", "batch_write_item"}:
        for table, requests in kwargs["RequestItems"].items():
            if operation == "batch_get_item":
                for key in requests["Keys"]:
                    yield table, key["pk"]["S"]
            else:
                for request in requests:
                    (body,) = request.values()
                    yield table, (body.get("Item") or body.get("Key"))["pk"]["S"]
        return
    key = kwargs.get("Item") or kwargs.get("Key")
    if operation == "query":  # the partition its key condition names (`pk = :pk`)
        key = {"pk": kwargs.get("ExpressionAttributeValues", {}).get(":pk")} \
            if kwargs["KeyConditionExpression"].startswith("pk = :pk") else None
    yield kwargs["TableName"], key["pk"]["S"] if key and key["pk"] else None


def _run_everything() -> dict[str, set[tuple[str, str, str | None]]]:
    """The calls each function makes, by function (logical id)."""
    with mock_aws():
        raw = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(raw, ledger_table=LEDGER, state_table=STATE)
        calls: dict[str, set[tuple[str, str, str | None]]] = {}
        counters = SyntheticCounters(account_ids(2), T0, end=T0 + timedelta(minutes=40))
        with SampleExporter(counters) as exporter:
            for function in ("CollectorFunction", "ApiFunction", "DriftCheckFunction",
                             "AuditFunction", "SinkFunction"):
                recorder = Recorder(raw)
                session = boto3.session.Session(region_name="us-east-1")
                app = bootstrap(Settings(ledger_table=LEDGER, state_table=STATE,
                                         commit_concurrency=1),
                                clock=FakeClock(T0 + timedelta(minutes=40)), session=session)
                app = replace(app, dynamodb=recorder)
                # bootstrap wires the DynamoDB adapters; the recorder stands in for their client
                # (a proxy: it answers every client method through __getattr__)
                ledger, sources = app.ledger, app.state.sources
                assert isinstance(ledger, DynamoLedgerStore)
                assert isinstance(sources, DynamoSourceStore)
                recording = cast("DynamoDBClient", recorder)
                ledger.table.client = recording
                state_table = sources.table  # one DynamoTable under every state store
                state_table.client = recording
                if function == "CollectorFunction":
                    state_table.client = raw  # arranging the source is the operator's
                    app.state.sources.put_source(SourceConfig("s1", exporter.url,
                                                              T0 + timedelta(minutes=1)))
                    state_table.client = recording
                    for _ in range(3):
                        collect_source(app.billing_deps, "s1")
                elif function == "ApiFunction":
                    exporter.fault = _shifted  # history changed: the confirm writes corrections
                    request = ReconcileRequest("s1", T0 + timedelta(minutes=5),
                                               T0 + timedelta(minutes=30), False, "arn:test")
                    assert reconcile(app.billing_deps, request).corrections_written > 0
                    source_document(app.state, app.state.sources.get_source("s1"),
                                    T0 + timedelta(minutes=40))
                    status_document(app.state, T0 + timedelta(minutes=40))
                    check_health(app.state, app.ledger, app.settings, T0 + timedelta(minutes=40))
                elif function == "AuditFunction":
                    report = audit_recent_months(app.ledger, app.state.sources,
                                                 T0 + timedelta(minutes=40))
                    assert report.accounts_checked == 2 and report.differences == 0
                elif function == "SinkFunction":
                    _deliver_to_a_sink(app, raw, recording)
                else:
                    app.state.verdicts.put_clock_verdict(ClockVerdict(T0, "ok", Decimal(1),
                                                                      Decimal(1), 3))
                calls[function] = recorder.calls
    return calls


def _deliver_to_a_sink(app: App, raw: Any, recording: Any) -> None:
    """What functions/sink/app.py does: a stream batch (entries the collector wrote) and a
    backfill, to a sink the operator registered, for accounts with billing customers."""
    sources = app.state.sources
    assert isinstance(sources, DynamoSourceStore)
    sources.table.client = raw  # arranging the sink and the customers is the operator's
    app.state.deliveries.put_sink(STRIPE)
    accounts = account_ids(2)
    for account in accounts:
        app.state.profiles.put_profile(account, PROFILE, customer=f"cus_{account[:8]}")
    sources.table.client = recording
    sink = FakeSink(STRIPE, cast("FakeClock", app.clock))
    assert app.state.deliveries.list_sinks() == [STRIPE]
    entries = list(app.ledger.partition_entries("s1", accounts[0], since=T0,
                                                until=T0 + timedelta(hours=1)))
    assert deliver_entries(app.delivery_deps(), sink, [e for _, e in entries]).delivered > 0
    report = deliver_since(app.delivery_deps(), app.ledger, app.state.sources, sink,
                           default_since(app.clock.now()))
    assert report.delivered > 0 and report.settled


def _shifted(number: int, query: Any, document: dict[str, Any]) -> tuple[int, bytes]:
    import json

    for snapshot in document["snapshots"]:
        if snapshot["taken_at"] >= "2026-11-22T10:20":
            for sample in snapshot["samples"]:
                sample["total_bytes"] += 1000
    return 200, json.dumps(document).encode()


@pytest.fixture(scope="module")
def recorded_calls() -> dict[str, set[tuple[str, str, str | None]]]:
    return _run_everything()


def _grants(resource: dict[str, Any]) -> list[tuple[str, str, list[str] | None]]:
    """(action, table logical id, allowed partition patterns or None) of a function's policies."""
    grants = []
    for policy in resource["Properties"].get("Policies", []):
        documents = [policy]
        if isinstance(policy, dict) and "Fn::If" in policy:
            documents = [policy["Fn::If"][1]]
        for document in documents:
            if not isinstance(document, dict) or "Statement" not in document:
                continue
            for statement in document["Statement"]:
                actions = statement["Action"]
                actions = actions if isinstance(actions, list) else [actions]
                resources = statement["Resource"]
                resources = resources if isinstance(resources, list) else [resources]
                condition = statement.get("Condition", {})  # StringEquals: exact keys
                patterns = (condition.get("ForAllValues:StringLike")
                            or condition.get("ForAllValues:StringEquals") or {}).get(
                                "dynamodb:LeadingKeys")
                patterns = patterns if patterns is None or isinstance(patterns, list) \
                    else [patterns]
                for action in actions:
                    for res in resources:
                        if isinstance(res, dict) and "Fn::GetAtt" in res:
                            grants.append((action, res["Fn::GetAtt"][0], patterns))
    return grants


@pytest.mark.parametrize("function", ["CollectorFunction", "ApiFunction", "DriftCheckFunction",
                                      "AuditFunction", "SinkFunction"])
def test_every_call_the_code_makes_is_granted(
    function: str, recorded_calls: dict[str, set[tuple[str, str, str | None]]],
    template: dict[str, Any],
) -> None:
    tables = {LEDGER: "LedgerTable", STATE: "StateTable"}
    grants = _grants(template["Resources"][function])
    missing = []
    for action, table, pk in sorted(recorded_calls[function], key=str):
        allowed = any(
            granted == f"dynamodb:{action}" and logical == tables[table]
            and (patterns is None or (pk is not None and any(
                fnmatch.fnmatchcase(pk, p) for p in patterns)))
            for granted, logical, patterns in grants
        )
        if not allowed:
            missing.append((action, tables[table], pk))
    assert recorded_calls[function], "nothing was recorded: the test proves nothing"
    assert missing == [], f"{function} calls what its policy does not grant: {missing}"
