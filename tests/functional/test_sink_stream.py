"""The stream path on DynamoDB Local: ledger entries committed by the real adapters, read back
through DynamoDB Local's stream API, shaped as Lambda's DynamoDB Streams event and handed to
functions/sink/app.py; and the delivery records' conditions under racing claims."""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from minutemeter.bootstrap import App, LazyReaders, SinkAdapters
from minutemeter.domain.delivery import SinkConfig, SinkKind
from minutemeter.domain.model import LedgerEntry, QuotaPlan, SourceConfig
from minutemeter.domain.rating import included_total
from minutemeter.local.ddb import DynamoDBLocal
from minutemeter.ports import DeliveryRecord
from tests.support.backends import Backend, dynamo_backend
from tests.support.clock import FakeBudget, FakeClock
from tests.support.sinks import PROFILE, STRIPE, FakeSink, make_entries

REPO = Path(__file__).resolve().parents[2]
HANDLER_PATH = REPO / "functions" / "sink" / "app.py"
BACKFILL_EVENT = REPO / "events" / "sink-backfill.json"
T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
ACCOUNTS = ["6f1c2a4e-0b7d-4c55-9a0e-3f2b8d1e7c90", "0b8f6f3c-1d2e-4f50-8a9b-0c1d2e3f4a5b"]


@pytest.fixture(scope="module")
def handler() -> ModuleType:
    """functions/sink/app.py, imported by path, with the Powertools environment."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POWERTOOLS_SERVICE_NAME", "minutemeter")
        patch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Minutemeter")
        spec = importlib.util.spec_from_file_location("sink_app", HANDLER_PATH)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


class Stream:
    """The ledger table's stream on DynamoDB Local, read from its start."""

    def __init__(self, ddb: DynamoDBLocal, backend: Backend) -> None:
        client = backend.client
        table = backend.settings.ledger_table
        described = client.update_table(
            TableName=table,
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})
        self.arn = described["TableDescription"]["LatestStreamArn"]
        self.client = boto3.client("dynamodbstreams", endpoint_url=ddb.endpoint,
                                   region_name="us-east-1")

    def event(self) -> dict[str, Any]:
        """Every record so far, as Lambda hands a batch of them to the function."""
        records: list[dict[str, Any]] = []
        shards = self.client.describe_stream(StreamArn=self.arn)["StreamDescription"]["Shards"]
        for shard in shards:
            iterator = self.client.get_shard_iterator(
                StreamArn=self.arn, ShardId=shard["ShardId"],
                ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            while iterator:
                page = self.client.get_records(ShardIterator=iterator, Limit=1000)
                records += [_lambda_record(r, self.arn) for r in page["Records"]]
                if not page["Records"]:
                    break
                iterator = page.get("NextShardIterator")
        return {"Records": records}


def _lambda_record(record: dict[str, Any], arn: str) -> dict[str, Any]:
    """A GetRecords record in the shape of a Lambda DynamoDB Streams event record."""
    change = dict(record["dynamodb"])
    created = change.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        change["ApproximateCreationDateTime"] = created.timestamp()
    return {"eventID": record["eventID"], "eventName": record["eventName"],
            "eventVersion": record.get("eventVersion", "1.1"), "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1", "dynamodb": change, "eventSourceARN": arn}


@pytest.fixture
def local(ddb_local: DynamoDBLocal) -> Iterator[tuple[Backend, Stream]]:
    backend = dynamo_backend("ddblocal", ddb_local.client())
    yield backend, Stream(ddb_local, backend)


def _commit(backend: Backend, entries: list[LedgerEntry]) -> None:
    """As the collector commits: the reservation, then the entries in batches."""
    first = entries[0]
    plan = QuotaPlan(first.batch_id, first.source_id, first.usage.account_id,
                     first.quota_month, PROFILE.included_bytes, PROFILE, "run-1",
                     first.collected_at, tuple(e.usage for e in entries))
    backend.ledger.reserve_quota(plan, expected_version=0,
                                 new_used=plan.used_before + included_total(plan))
    backend.ledger.write_reserved(entries)


def _app(backend: Backend, sink: FakeSink, clock: FakeClock) -> App:
    return App(settings=backend.settings, clock=clock, dynamodb=backend.client,
               meter=backend.meter, ledger=backend.ledger,  # type: ignore[arg-type]
               state=backend.state, readers=LazyReaders({}),
               sinks=SinkAdapters({SinkKind.STRIPE: lambda config: sink}))


def test_stream_records_deliver_every_entry_exactly_once(
    local: tuple[Backend, Stream], handler: ModuleType,
) -> None:
    # GIVEN a Stripe sink, two accounts with customers, and entries committed to the ledger
    backend, stream = local
    clock = FakeClock(T0 + timedelta(hours=2))
    sink = FakeSink(STRIPE, clock)
    app = _app(backend, sink, clock)
    app.state.deliveries.put_sink(STRIPE)
    for number, account in enumerate(ACCOUNTS):
        app.state.profiles.put_profile(account, PROFILE, customer=f"cus_{number}")
    entries = [e for account in ACCOUNTS
               for e in make_entries(account, T0, [100, 200, 300, 400],
                                     used_before=PROFILE.included_bytes)]
    for account in ACCOUNTS:
        _commit(backend, [e for e in entries if e.usage.account_id == account])
    event = stream.event()
    inserts = [r for r in event["Records"]
               if r["dynamodb"]["NewImage"].get("type", {}).get("S") == "entry"]
    assert len(inserts) == len(entries) < len(event["Records"])  # quota items too
    # WHEN the sink refuses the first half of the entries (429) when too little time is left
    # to wait for it, then Lambda retries the batch
    refused = {e.ledger_id for e in entries[:4]}
    for ledger_id in refused:
        sink.fail(ledger_id, "retry")
    first = handler.deliver_batch(app, event, FakeBudget(21.0))
    failed = {f["itemIdentifier"] for f in first["batchItemFailures"]}
    by_sequence = {r["dynamodb"]["SequenceNumber"]: r["dynamodb"]["NewImage"]["ledger_id"]["S"]
                   for r in inserts}
    assert {by_sequence[s] for s in failed} == refused  # exactly the unsettled records
    retried = handler.deliver_batch(app, event, FakeBudget(None))
    again = handler.deliver_batch(app, event, FakeBudget(None))  # a duplicate invocation
    # THEN every entry was counted once by the billing system, with its value and customer
    assert retried["batchItemFailures"] == [] and again["batchItemFailures"] == []
    assert sorted(e.ledger_id for e in sink.counted) == sorted(e.ledger_id for e in entries)
    assert sink.total() == 2 * 1000
    assert {e.customer for e in sink.counted} == {"cus_0", "cus_1"}
    records = app.state.deliveries.get_records(STRIPE.name, [e.ledger_id for e in entries])
    assert {r.status for r in records.values()} == {"delivered"}


def test_a_record_that_is_not_an_entry_is_passed_over(
    local: tuple[Backend, Stream], handler: ModuleType,
) -> None:
    backend, stream = local
    clock = FakeClock(T0 + timedelta(hours=2))
    sink = FakeSink(STRIPE, clock)
    app = _app(backend, sink, clock)
    app.state.deliveries.put_sink(STRIPE)
    entries = make_entries(ACCOUNTS[0], T0, [5], used_before=PROFILE.included_bytes)
    _commit(backend, entries)  # no customer: not deliverable, and no failure either
    response = handler.deliver_batch(app, stream.event(), FakeBudget(None))
    assert response == {"batchItemFailures": []}
    assert sink.requests == 0


def test_racing_claims_on_dynamodb_local_have_one_winner(ddb_local: DynamoDBLocal) -> None:
    # GIVEN one sending record read by eight senders
    store = dynamo_backend("ddblocal", ddb_local.client()).state.deliveries
    first = DeliveryRecord(STRIPE.name, "L1", "sending", 1, T0, T0)
    barrier = threading.Barrier(8)
    wins: list[bool] = []

    def claim(expected: int | None, record: DeliveryRecord) -> None:
        barrier.wait()
        wins.append(store.claim(record, expected_attempts=expected))

    # WHEN all claim the new record at once, then all resend it at once
    for expected, record in ((None, first), (1, replace(first, attempts=2))):
        wins.clear()
        threads = [threading.Thread(target=claim, args=(expected, record)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # THEN exactly one claim wins each time
        assert sorted(wins) == [False] * 7 + [True]
    assert store.get_records(STRIPE.name, ["L1"])["L1"].attempts == 2


def test_a_sink_config_round_trips(ddb_local: DynamoDBLocal) -> None:
    store = dynamo_backend("ddblocal", ddb_local.client()).state.deliveries
    lago = SinkConfig("lago", SinkKind.LAGO, "http://127.0.0.1:3000", "bytes",
                      STRIPE.value, api_key_env="LAGO_API_KEY")
    store.put_sink(lago)
    assert store.get_sink("lago") == lago


@dataclass
class _Context:
    """The parts of a Lambda context the handler and Powertools read."""

    function_name: str = "minutemeter-sink"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:minutemeter-sink"
    aws_request_id: str = "0f6c2a4e-0b7d-4c55-9a0e-3f2b8d1e7c90"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def test_the_scheduled_backfill_delivers_what_the_stream_did_not(
    local: tuple[Backend, Stream], handler: ModuleType, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN entries the stream never delivered (the sink was registered after them)
    backend, _ = local
    clock = FakeClock(T0 + timedelta(days=2))
    sink = FakeSink(STRIPE, clock)
    app = _app(backend, sink, clock)
    app.state.sources.put_source(SourceConfig("src", "http://127.0.0.1:1", T0))
    app.state.profiles.put_profile(ACCOUNTS[0], PROFILE, customer="cus_0")
    entries = make_entries(ACCOUNTS[0], T0, [10, 20], used_before=PROFILE.included_bytes)
    _commit(backend, entries)
    app.state.deliveries.put_sink(STRIPE)
    # WHEN the schedule's event (events/sink-backfill.json) reaches the handler
    monkeypatch.setattr(handler, "_app", app)
    event = json.loads(BACKFILL_EVENT.read_text())
    result = handler.lambda_handler(event, _Context())
    # THEN both entries are delivered once, and the answer says so
    assert result["settled"] is True and result["sinks"][0]["delivered"] == 2
    assert sorted(e.ledger_id for e in sink.counted) == sorted(e.ledger_id for e in entries)
