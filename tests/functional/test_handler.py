"""The collector Lambda handler (functions/collector/app.py) on moto, with the scheduled event
from events/, a real sample exporter on 127.0.0.1 and the system clock."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from minutemeter.adapters.dynamo.schema import create_tables
from minutemeter.bootstrap import App, bootstrap
from minutemeter.domain.errors import InputError
from minutemeter.domain.model import SourceConfig
from minutemeter.domain.timeutil import floor_minute, format_instant
from minutemeter.local.exporter import SampleExporter, SyntheticCounters, account_ids
from minutemeter.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
HANDLER_PATH = REPO / "functions" / "collector" / "app.py"
EVENT_PATH = REPO / "events" / "scheduler-event.json"
ACCOUNTS = account_ids(3)
LEDGER_TABLE, STATE_TABLE = "handler-ledger", "handler-state"


@dataclass
class FakeLambdaContext:
    """The parts of a Lambda context the handler and Powertools read."""

    remaining_ms: int = 300_000
    function_name: str = "minutemeter-collector"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:123456789012:function:minutemeter-collector"
    )
    aws_request_id: str = "6bc28136-4a3c-4c0a-9d1e-5c3f7f2b0a11"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture(scope="module")
def handler() -> ModuleType:
    """functions/collector/app.py, imported by path (it is not a package), with the
    Powertools environment template.yaml gives it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POWERTOOLS_SERVICE_NAME", "minutemeter")
        patch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Minutemeter")
        spec = importlib.util.spec_from_file_location("collector_app", HANDLER_PATH)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


def _event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(EVENT_PATH.read_text())
    event.update(overrides)
    return event


@pytest.fixture
def ops(handler: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    """Moto with both tables, the Lambda's environment, no cached App in the handler module;
    yields an operator's App on the same tables for arranging and checking state."""
    monkeypatch.setenv("MINUTEMETER_LEDGER_TABLE", LEDGER_TABLE)
    monkeypatch.setenv("MINUTEMETER_STATE_TABLE", STATE_TABLE)
    monkeypatch.setenv("MINUTEMETER_COMMIT_CONCURRENCY", "1")  # moto is not thread-safe
    monkeypatch.setenv("MINUTEMETER_HTTP_RETRIES", "0")
    monkeypatch.setattr(handler, "_app", None)
    with mock_aws():
        app = bootstrap(load_settings({"MINUTEMETER_LEDGER_TABLE": LEDGER_TABLE,
                                       "MINUTEMETER_STATE_TABLE": STATE_TABLE}),
                        session=boto3.session.Session(region_name="us-east-1"))
        create_tables(app.dynamodb, ledger_table=LEDGER_TABLE, state_table=STATE_TABLE)
        yield app


@pytest.fixture
def origin() -> datetime:
    """Two hours ago, on a minute: the counters start here and the source two minutes later."""
    return floor_minute(datetime.now(UTC)) - timedelta(hours=2)


@pytest.fixture
def exporter(origin: datetime) -> Iterator[SampleExporter]:
    counters = SyntheticCounters(ACCOUNTS, origin, live_clock=lambda: datetime.now(UTC))
    with SampleExporter(counters) as server:
        yield server


def _register(ops: App, url: str, origin: datetime, source_id: str = "demo") -> SourceConfig:
    source = SourceConfig(source_id=source_id, url=url, start=origin + timedelta(minutes=2),
                          lag_seconds=60, max_window_seconds=1800)
    ops.state.sources.put_source(source)
    return source


def test_a_scheduled_run_returns_the_job(
    handler: ModuleType, ops: App, exporter: SampleExporter, origin: datetime
) -> None:
    source = _register(ops, exporter.url, origin)
    event = _event()
    assert event["source_id"] == "demo"  # the event file, as sam local invoke sends it

    result = handler.lambda_handler(event, FakeLambdaContext())

    assert result["status"] == "ok" and result["error"] is None
    assert result["source_id"] == "demo" and result["job"] == "collect"
    assert result["window_since"] == format_instant(source.start)
    assert result["window_until"] == format_instant(source.start + timedelta(minutes=30))
    assert result["completed_until"] == result["window_until"]
    assert result["written_minutes"] == 30 * len(ACCOUNTS)
    assert result["caught_up"] is False  # 2 h behind, 30 min per run
    assert result["notes"] == []
    assert json.loads(json.dumps(result)) == result  # a valid Lambda response
    state = ops.state.sync.get_state("demo")
    assert state.last_completed_until == source.start + timedelta(minutes=30)
    assert state.last_job is not None and state.last_job["job_id"] == result["job_id"]
    assert state.consecutive_failures == 0


def test_a_warm_invocation_reuses_the_app(
    handler: ModuleType, ops: App, exporter: SampleExporter, origin: datetime
) -> None:
    source = _register(ops, exporter.url, origin)
    first = handler.lambda_handler(_event(), FakeLambdaContext())
    app = handler._app
    second = handler.lambda_handler(_event(scheduled_time=None), FakeLambdaContext())

    assert app is not None and handler._app is app
    assert second["window_since"] == first["completed_until"]
    assert (ops.state.sync.get_state("demo").last_completed_until
            == source.start + timedelta(hours=1))
    assert [j["job_id"] for j in ops.state.sync.list_jobs("demo", 5)] == [
        second["job_id"], first["job_id"],
    ]


@pytest.mark.parametrize(
    ("fault_response", "error_type"),
    [
        ((503, b"overloaded"), "ExporterError"),
        ((200, b'{"node_id": "node-a", "env": "prod"}'), "SourceProtocolError"),
    ],
)
def test_an_error_run_raises_and_is_recorded(
    handler: ModuleType,
    ops: App,
    exporter: SampleExporter,
    origin: datetime,
    fault_response: tuple[int, bytes],
    error_type: str,
) -> None:
    _register(ops, exporter.url, origin)
    exporter.fault = lambda number, query, document: fault_response

    with pytest.raises(handler.CollectFailedError, match=f"^{error_type}: "):
        handler.lambda_handler(_event(), FakeLambdaContext())

    (job,) = ops.state.sync.list_jobs("demo", 5)
    assert job["status"] == "error" and job["error_type"] == error_type
    assert job["written_minutes"] == 0
    state = ops.state.sync.get_state("demo")
    assert state.last_completed_until is None
    assert state.consecutive_failures == 1
    assert state.last_error == job["error"]
    assert len(exporter.requests) == 1  # HTTP retries are 0 in this environment


def test_an_unknown_source_raises_and_leaves_no_state(handler: ModuleType, ops: App) -> None:
    with pytest.raises(handler.CollectFailedError, match=r"^SourceNotFoundError: "):
        handler.lambda_handler(_event(source_id="ghost"), FakeLambdaContext())
    # nothing is recorded under an id that is not a source (a later `sources put ghost` starts
    # clean); the failed invocation itself is the signal (Errors metric, DLQ)
    assert ops.state.sync.list_jobs("ghost", 5) == []
    assert ops.state.sync.get_state("ghost").consecutive_failures == 0


@pytest.mark.parametrize(
    "event",
    [
        [],
        "demo",
        None,
        {},
        {"scheduled_time": "2026-11-25T10:00:00Z"},
        {"source_id": ""},
        {"source_id": 5},
        {"source_id": ["demo"]},
    ],
)
def test_a_malformed_event_is_an_input_error(
    handler: ModuleType, ops: App, event: object
) -> None:
    with pytest.raises(InputError):
        handler.lambda_handler(event, FakeLambdaContext())
    assert handler._app is None  # rejected before anything was wired or written
    assert ops.state.sync.list_jobs("demo", 5) == []


@pytest.mark.parametrize("remaining_ms", [1_000, 20_000])
def test_a_nearly_exhausted_budget_stops_before_the_first_chunk(
    handler: ModuleType,
    ops: App,
    exporter: SampleExporter,
    origin: datetime,
    remaining_ms: int,
) -> None:
    source = _register(ops, exporter.url, origin)

    result = handler.lambda_handler(_event(), FakeLambdaContext(remaining_ms=remaining_ms))

    # the run is recorded as ok, with a note, and did nothing: no page, no entry, no progress
    assert result["status"] == "ok"
    assert result["notes"] == [
        f"stopped before {source.start.isoformat()} to respect the deadline"
    ]
    assert (result["pages"], result["written_minutes"]) == (0, 0)
    assert result["completed_until"] is None and result["caught_up"] is False
    assert exporter.requests == []
    assert ops.state.sync.get_state("demo").last_completed_until is None
    assert ops.state.sync.list_jobs("demo", 5)[0]["notes"] == result["notes"]


def test_a_budget_just_over_the_margin_runs_one_chunk_then_stops(
    handler: ModuleType, ops: App, exporter: SampleExporter, origin: datetime
) -> None:
    source = _register(ops, exporter.url, origin)
    second_chunk = source.start + timedelta(minutes=15)

    # 20.001 s left: the first chunk fits the 20 s margin (its estimate is 0); the second is
    # estimated at 1.5 times the first chunk's duration and does not
    result = handler.lambda_handler(_event(), FakeLambdaContext(remaining_ms=20_001))

    assert result["status"] == "ok"
    assert result["completed_until"] == format_instant(second_chunk)
    assert result["written_minutes"] == 15 * len(ACCOUNTS)
    assert result["notes"] == [
        f"stopped before {second_chunk.isoformat()} to respect the deadline"
    ]
    assert ops.state.sync.get_state("demo").last_completed_until == second_chunk


def test_a_run_that_finds_the_lease_held_is_skipped_not_failed(
    handler: ModuleType, ops: App, exporter: SampleExporter, origin: datetime
) -> None:
    # GIVEN another runner holding the source's lease (a slow run, or a duplicate delivery)
    _register(ops, exporter.url, origin)
    held = ops.state.sync.acquire_lease("demo", "other-run", now=datetime.now(UTC),
                                        lease_seconds=60, margin_seconds=2)
    # WHEN the scheduler's event arrives
    result = handler.lambda_handler(_event(), FakeLambdaContext())
    # THEN the invocation succeeds (no retry, no DLQ) with status skipped, naming the holder
    assert result["status"] == "skipped" and result["error"] is None
    assert "other-run" in result["notes"][0]
    assert exporter.requests == []
    state = ops.state.sync.get_state("demo")
    assert state.last_completed_until is None and state.consecutive_failures == 0
    assert ops.state.sync.get_lease("demo") == held


def _emf_documents(stdout: str) -> list[dict[str, Any]]:
    """EMF documents on stdout; a metric's value (Powertools writes a list) as one number."""
    documents = []
    for line in stdout.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            document = json.loads(line)
            for metric in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
                value = document[metric["Name"]]
                if isinstance(value, list):
                    (document[metric["Name"]],) = value
            documents.append(document)
    return documents


def test_each_run_prints_one_emf_document_with_the_source_dimension(
    handler: ModuleType, ops: App, exporter: SampleExporter, origin: datetime,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _register(ops, exporter.url, origin)
    capsys.readouterr()
    result = handler.lambda_handler(_event(), FakeLambdaContext())
    (document,) = _emf_documents(capsys.readouterr().out)
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "Minutemeter"
    assert sorted(directive["Dimensions"][0]) == ["SourceId", "service"]  # one dimension set
    assert len(directive["Dimensions"]) == 1
    assert (document["SourceId"], document["service"]) == ("demo", "minutemeter")
    units = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    assert units == {
        "ProcessedSamples": "Count", "WrittenMinutes": "Count", "ReplayedMinutes": "Count",
        "QuarantinedSamples": "Count", "CounterResets": "Count", "RunDuration": "Milliseconds",
        "RunFailures": "Count", "LeaseSkips": "Count", "LagSeconds": "Seconds",
        "FailureRate": "Percent",
    }
    assert document["WrittenMinutes"] == result["written_minutes"] == 30 * len(ACCOUNTS)
    assert document["ProcessedSamples"] == result["processed_samples"]
    assert document["RunFailures"] == 0 and document["LeaseSkips"] == 0
    # 2 h of backlog, 30 minutes collected: the watermark is about 88 minutes behind
    assert 85 * 60 <= document["LagSeconds"] <= 92 * 60
    assert document["FailureRate"] == 0


def test_a_failed_run_still_reports_its_metrics(
    handler: ModuleType, ops: App, exporter: SampleExporter, origin: datetime,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _register(ops, exporter.url, origin)
    exporter.fault = lambda number, query, document: (500, b"down")
    capsys.readouterr()
    with pytest.raises(handler.CollectFailedError):
        handler.lambda_handler(_event(), FakeLambdaContext())
    (document,) = _emf_documents(capsys.readouterr().out)
    assert document["RunFailures"] == 1 and document["WrittenMinutes"] == 0
    assert document["FailureRate"] == 100


def test_a_skipped_run_reports_only_the_skip(
    handler: ModuleType, ops: App, exporter: SampleExporter, origin: datetime,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _register(ops, exporter.url, origin)
    ops.state.sync.acquire_lease("demo", "other", now=datetime.now(UTC), lease_seconds=60,
                                 margin_seconds=2)
    capsys.readouterr()
    handler.lambda_handler(_event(), FakeLambdaContext())
    (document,) = _emf_documents(capsys.readouterr().out)
    names = {m["Name"] for m in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert names == {"LeaseSkips"} and document["LeaseSkips"] == 1
