"""Hardening of what operators and exporters can put into the state table, on moto and on
DynamoDB Local: source bounds and unreadable registry records (a listing never fails on one),
money precision of billing profiles, and job results clipped to fit an item."""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from minutemeter.adapters.dynamo.ledger import DynamoLedgerStore
from minutemeter.adapters.dynamo.state.items import MAX_ERROR_CHARS, MAX_NOTE_CHARS, MAX_NOTES
from minutemeter.adapters.dynamo.state.sources import DynamoSourceStore
from minutemeter.adapters.dynamo.wire import CapacityMeter, to_wire
from minutemeter.adapters.exporter_http import HttpExporter
from minutemeter.adapters.exporter_reader import ExporterReader
from minutemeter.bootstrap import App
from minutemeter.domain.model import (
    BillingProfile,
    JobResult,
    JobStatus,
    MinuteUsage,
    QuotaPlan,
    SourceConfig,
    SourceKind,
)
from minutemeter.domain.money import MAX_BILLABLE_BYTES, check_profile
from minutemeter.domain.rating import plan_entries
from minutemeter.domain.registry import SourceUnreadableError
from minutemeter.local.ddb import DynamoDBLocal
from minutemeter.ports import LedgerFilter
from minutemeter.service.operations import check_health, source_documents, status_document
from tests.support.backends import Backend, dynamo_backend
from tests.support.cli import InProcessCli
from tests.support.clock import FakeClock

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=40)
ACCOUNT = "6f1c2a4e-0b7d-4c55-9a0e-3f2b8d1e7c90"
REPO = Path(__file__).resolve().parents[2]
GOOD = ["--url", "http://127.0.0.1:9/base", "--start", "2026-11-22T10:02:00Z"]


class Cli(InProcessCli):
    """``minutemeter`` in-process on the real adapters of one backend."""

    def __init__(self, app: App, backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
        super().__init__(app, capsys)
        self.backend = backend

    def put_raw_source(self, source_id: str, **fields: Any) -> None:
        """A registry record written straight into the table (boto3 put_item), bypassing every
        check: what an older release, a console edit or a bug may have left."""
        item = {"pk": "SOURCES", "sk": source_id, "type": "source", "source_id": source_id,
                "url": "http://127.0.0.1:9", "start": "2026-11-22T10:02:00.000000Z",
                "lag_seconds": 60, "max_window_seconds": 3600, "reset_policy": "skip",
                "lease_seconds": 60, "enabled": True, "clock_guard": "widen",
                "clock_margin_ms": 1000}
        item.update(fields)
        self.backend.client.put_item(TableName=self.app.settings.state_table,
                                     Item=to_wire({k: v for k, v in item.items()
                                                   if v is not None}))


def _backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "moto":
        client = request.getfixturevalue("moto_client")
        backend = dynamo_backend("moto", client, commit_concurrency=1)
    else:
        ddb: DynamoDBLocal = request.getfixturevalue("ddb_local")
        backend = dynamo_backend("ddblocal", ddb.client())
    return backend


ENGINES = [pytest.param("moto"), pytest.param("ddblocal", marks=pytest.mark.ddblocal)]


@pytest.fixture(params=ENGINES)
def cli(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> Cli:
    backend = _backend(request)
    assert isinstance(backend.state.sources, DynamoSourceStore)
    assert isinstance(backend.ledger, DynamoLedgerStore)
    app = App(settings=backend.settings, clock=FakeClock(NOW), dynamodb=backend.client,
              meter=backend.meter or CapacityMeter(), ledger=backend.ledger, state=backend.state,
              readers={SourceKind.EXPORTER: ExporterReader(HttpExporter(timeout_seconds=2,
                                                                        retries=0))})
    return Cli(app, backend, capsys)


# -- 1. start out of range, unreadable records ------------------------------------------------
@pytest.mark.parametrize(
    "start",
    [
        "0001-01-01T00:00:00Z",  # stored as "1-01-01..." on main, then every listing failed
        "0999-12-31T23:59:00Z",
        "1999-12-31T23:59:00Z",
        "9000-01-01T00:01:00Z",
        "9999-12-31T23:59:30Z",  # OverflowError on main (rounded up past year 9999)
        "9999-12-31T23:59:00-01:00",  # beyond year 9999 in UTC
    ],
)
def test_sources_put_refuses_a_start_out_of_range(cli: Cli, start: str) -> None:
    line = cli.refused("sources", "put", "s1", "--url", "http://127.0.0.1:9", "--start", start)

    assert "--start" in line
    assert cli.json("sources", "list") == []


def test_sources_put_accepts_the_ends_of_the_start_range(cli: Cli) -> None:
    first = cli.json("sources", "put", "s1", "--url", "http://127.0.0.1:9",
                     "--start", "2000-01-01T00:00:00Z")
    last = cli.json("sources", "put", "s2", "--url", "http://127.0.0.1:9",
                    "--start", "9000-01-01T00:00:00Z")
    assert (first["start"], last["start"]) == ("2000-01-01T00:00:00Z", "9000-01-01T00:00:00Z")


CORRUPT: dict[str, dict[str, Any]] = {
    "year-1": {"start": "1-01-01T00:00:00.000000Z"},  # what main stored for --start 0001-...
    "no-url": {"url": None},
    "lag-text": {"lag_seconds": "sixty"},
    "tolerance-huge": {"clock_tolerance_seconds": 999_999_999_999_999},  # main accepted it
    "policy-odd": {"reset_policy": "sometimes"},
    "url-number": {"url": 5},
    "kind-unknown": {"kind": "graphite"},  # no reader here: not readable as any source
    "prometheus-no-selector": {"kind": "prometheus"},  # a prometheus source reads nothing
}


def test_a_listing_reports_unreadable_records_and_shows_the_rest(
    cli: Cli, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN one good source and corrupt records written straight into the table
    cli.json("sources", "put", "good", *GOOD)
    for source_id, fields in CORRUPT.items():
        cli.put_raw_source(source_id, **fields)

    # WHEN the operator lists the sources and their status
    with caplog.at_level(logging.WARNING):
        listed = cli.json("sources", "list")
    status = cli.json("status")
    code, table = cli.run("status", "--table")

    # THEN every listing answers: the good source in full, each bad one with why
    by_id = {d["source_id"]: d for d in listed}
    assert set(by_id) == {"good", *CORRUPT}
    assert by_id["good"]["url"] == "http://127.0.0.1:9/base"
    for source_id in CORRUPT:
        assert set(by_id[source_id]) == {"source_id", "error"}, source_id
        assert by_id[source_id]["error"], source_id
    assert "start" in by_id["year-1"]["error"]
    assert "clock_tolerance_seconds" in by_id["tolerance-huge"]["error"]
    assert {d["source_id"] for d in status} == set(by_id)
    assert code == 0 and "unreadable" in table
    warned = {r.__dict__.get("source_id") for r in caplog.records
              if r.getMessage() == "unreadable source record"}
    assert warned == set(CORRUPT)
    # and so do the documents of the API (GET /sources, /status, /healthz)
    state = cli.app.state
    assert len(source_documents(state, NOW)) == len(by_id)
    assert len(status_document(state, NOW)["sources"]) == len(by_id)
    health = check_health(state, cli.app.ledger, cli.app.settings, NOW)
    assert not health.ok and "sources" in health.document["failing"]
    assert set(health.document["checks"]["sources"]["unreadable"]) == set(CORRUPT)
    # and the readable sources are still what list_sources gives the rest of the code
    assert [s.source_id for s in state.sources.list_sources()] == ["good"]


def test_a_source_stored_before_kinds_existed_is_an_exporter_source(cli: Cli) -> None:
    # GIVEN a registry record without a kind, as releases before kinds stored them
    cli.put_raw_source("old")

    # WHEN it is listed, shown and updated
    listed = cli.json("sources", "list")
    shown = cli.json("status", "old")
    updated = cli.json("sources", "put", "old", "--lag", "30")

    # THEN it is an exporter source everywhere, and from then on stored as one
    assert listed[0]["kind"] == shown["kind"] == updated["kind"] == "exporter"
    item = cli.backend.client.get_item(TableName=cli.app.settings.state_table,
                                       Key=to_wire({"pk": "SOURCES", "sk": "old"}))["Item"]
    assert item["kind"] == {"S": "exporter"}


@pytest.mark.parametrize("source_id", sorted(CORRUPT))
def test_sources_put_with_valid_values_repairs_an_unreadable_record(
    cli: Cli, source_id: str
) -> None:
    cli.put_raw_source(source_id, **CORRUPT[source_id])

    repaired = cli.json("sources", "put", source_id, *GOOD)

    assert repaired["start"] == "2026-11-22T10:02:00Z"
    assert cli.app.state.sources.get_source(source_id).url == "http://127.0.0.1:9/base"
    (listed,) = cli.json("sources", "list")
    assert "error" not in listed and listed["source_id"] == source_id


def test_an_unreadable_record_says_how_to_repair_it(cli: Cli) -> None:
    cli.put_raw_source("bad", start="1-01-01T00:00:00.000000Z")

    needs_url = cli.refused("sources", "put", "bad", "--lag", "30")
    disabled = cli.refused("sources", "disable", "bad", code=1)
    status = cli.refused("status", "bad", code=1)
    collected = cli.json("collect", "bad", code=1)  # a failed run: its job is printed and kept

    assert "unreadable" in needs_url and "--url" in needs_url
    for line in (disabled, status, collected["error"]):
        assert "unreadable" in line and "sources put bad" in line, line
    assert collected["error_type"] == "SourceUnreadableError"
    assert cli.app.state.sync.list_jobs("bad", 1)[0]["error_type"] == "SourceUnreadableError"
    with pytest.raises(SourceUnreadableError):
        cli.app.state.sources.get_source("bad")
    # once put again, disable works
    cli.json("sources", "put", "bad", *GOOD)
    assert cli.json("sources", "disable", "bad")["enabled"] is False


def _api_handler() -> ModuleType:
    spec = importlib.util.spec_from_file_location("api_app_registry", REPO / "functions/api/app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Context:
    aws_request_id = "registry"
    function_name = "minutemeter-api"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:minutemeter-api"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


@pytest.fixture(scope="module")
def api() -> Iterator[ModuleType]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POWERTOOLS_SERVICE_NAME", "minutemeter")
        yield _api_handler()


def _get(api: ModuleType, path: str) -> tuple[int, Any]:
    event = json.loads((REPO / "events" / "api-sources.json").read_text())
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    response = api.lambda_handler(event, _Context())
    return response["statusCode"], json.loads(response["body"])


def test_the_api_lists_an_unreadable_record_instead_of_failing(
    cli: Cli, api: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "_app", cli.app)
    cli.json("sources", "put", "good", *GOOD)
    cli.put_raw_source("bad", start="1-01-01T00:00:00.000000Z")

    sources_status, sources = _get(api, "/sources")
    status_status, status = _get(api, "/status")
    health_status, health = _get(api, "/healthz")
    one_status, one = _get(api, "/sources/bad")

    assert sources_status == 200
    assert [s["source_id"] for s in sources["sources"]] == ["bad", "good"]
    assert set(sources["sources"][0]) == {"source_id", "error"}
    assert status_status == 200 and len(status["sources"]) == 2
    assert health_status == 503 and health["checks"]["sources"]["unreadable"] == ["bad"]
    assert one_status == 500 and one["error"]["type"] == "internal_error"
    assert "sources put bad" in one["error"]["message"]


# -- 2. bounds of the integer options ---------------------------------------------------------
@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--clock-tolerance", "999999999999999"),  # accepted on main, then every run failed
        ("--clock-tolerance", "604801"),
        ("--clock-tolerance", "0"),
        ("--lag", str(10**30)),
        ("--max-window", str(10**30 * 60)),
        ("--lease-seconds", str(10**30)),
        ("--clock-margin-ms", str(10**30)),
        ("--clock-margin-ms", "-1"),
    ],
)
def test_integer_options_are_bounded(cli: Cli, option: str, value: str) -> None:
    line = cli.refused("sources", "put", "s1", *GOOD, option, value)
    assert option in line
    assert cli.json("sources", "list") == []


def test_the_largest_clock_tolerance_is_accepted_and_collectable(cli: Cli) -> None:
    source = cli.json("sources", "put", "s1", *GOOD, "--clock-tolerance", "604800")
    assert source["clock_tolerance_seconds"] == 604800
    job = cli.json("collect", "s1", code=1)  # nothing listens on port 9: an exporter error
    assert job["error_type"] == "ExporterError"


# -- 3. money --------------------------------------------------------------------------------
def _profile(*options: str) -> list[str]:
    defaults = {"--included-bytes": "0", "--price-per-byte": "0.000000001",
                "--pricing-version": "v1"}
    given = dict(zip(options[::2], options[1::2], strict=True))
    return [text for pair in {**defaults, **given}.items() for text in pair]


@pytest.mark.parametrize(
    "options",
    [
        ("--price-per-byte", "0." + "1" * 38),  # 38 digits: accepted on main, then Inexact
        ("--price-per-byte", "0." + "1" * 39),  # 39 digits: a traceback on main
        ("--price-per-byte", "1234567.5"),
        ("--price-per-byte", "0.1234567890123"),  # 13 significant digits
        ("--price-per-byte", "1E-19"),
        ("--price-per-byte", "-0.000001"),
        ("--price-per-byte", "Infinity"),
        ("--price-per-byte", "sNaN"),
        ("--multiplier", "1.234567"),  # 7 significant digits
        ("--multiplier", "1000001"),
        ("--multiplier", "0.0000001"),
        ("--multiplier", "-1"),
        ("--multiplier", "NaN"),
        ("--included-bytes", "-1"),
        ("--included-bytes", str(2**63 + 1)),
        ("--pricing-version", " "),
        ("--pricing-version", "v" * 101),
    ],
)
def test_profiles_put_refuses_money_outside_the_documented_precision(
    cli: Cli, options: tuple[str, str]
) -> None:
    line = cli.refused("profiles", "put", ACCOUNT, *_profile(*options))
    assert options[0] in line
    assert cli.app.state.profiles.get_profiles([ACCOUNT]) == {}


def test_the_extreme_valid_profile_prices_the_largest_usage_exactly_in_dynamodb(
    cli: Cli,
) -> None:
    # GIVEN the largest and most precise profile the bounds allow
    document = cli.json("profiles", "put", ACCOUNT, "--included-bytes", str(2**63),
                        "--price-per-byte", "999999.999999", "--multiplier", "999999",
                        "--pricing-version", "max")
    profile = cli.app.state.profiles.get_profiles([ACCOUNT])[ACCOUNT]
    assert profile == check_profile(profile)
    assert Decimal(document["price_per_byte"]) == Decimal("999999.999999")
    # WHEN a minute with the largest billable bytes is rated and written
    minute = T0 + timedelta(minutes=3)
    usage = MinuteUsage("node-a", ACCOUNT, minute, MAX_BILLABLE_BYTES, 0, MAX_BILLABLE_BYTES,
                        minute, minute, 1)
    plan = QuotaPlan("b1", "s1", ACCOUNT, "2026-11", 2**63, profile, "run-1", NOW, (usage,))
    (entry,) = plan_entries(plan)
    cli.app.ledger.put_entries([entry])
    # THEN the amount is exact and DynamoDB stores it as is
    (stored,) = cli.app.ledger.export(LedgerFilter(source_id="s1"))
    wide = Context(prec=100)
    expected = wide.multiply(wide.multiply(Decimal(MAX_BILLABLE_BYTES),
                                           Decimal("999999.999999")), Decimal(999999))
    assert len(expected.as_tuple().digits) == 38  # the precision is used to the last digit
    assert stored.amount == entry.amount == expected


def test_profiles_are_stored_in_canonical_form(cli: Cli) -> None:
    document = cli.json("profiles", "put", ACCOUNT, *_profile(
        "--price-per-byte", "0.0000000010", "--multiplier", "1.50"))
    stored = cli.app.state.profiles.get_profiles([ACCOUNT])[ACCOUNT]
    assert (document["price_per_byte"], document["multiplier"]) == ("0.000000001", "1.5")
    assert stored == BillingProfile(0, Decimal("1E-9"), Decimal("1.5"), "v1")


# -- 4. credentials in a URL ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://user:s3cret@127.0.0.1:9/base", "--token-secret"),
        ("https://token@exporter.example/base", "--token-secret"),
        ("http://:s3cret@127.0.0.1:9", "--token-secret"),
        ("http://127.0.0.1:9/base?token=s3cret", "query"),
        ("http://127.0.0.1:9/base#s3cret", "query"),
        ("http://127.0.0.1:9/base?", "query"),
        ("http://127.0.0.1:port/base", "--url"),
        ("http://127.0.0.1:9/" + "x" * 2100, "--url"),
    ],
)
def test_sources_put_refuses_credentials_queries_and_fragments_in_the_url(
    cli: Cli, url: str, says: str
) -> None:
    line = cli.refused("sources", "put", "s1", "--url", url)
    assert says in line and "s3cret" not in line
    assert cli.json("sources", "list") == []


# -- 5. job results bounded to fit an item ----------------------------------------------------
def test_a_600_kb_error_is_recorded_clipped_and_shown_by_status(cli: Cli) -> None:
    # GIVEN a source and a failed job whose exporter put 600 KB of text into its error
    cli.json("sources", "put", "s1", *GOOD)
    job = JobResult(job_id="run-big", job="collect", source_id="s1", started_at=NOW,
                    status=JobStatus.ERROR, finished_at=NOW + timedelta(seconds=3),
                    error="exporter said: " + "x" * 600_000, error_type="ExporterError",
                    notes=[f"note {i} " + "y" * 10_000 for i in range(50)])

    # WHEN it is recorded
    cli.app.state.sync.record_result(job, expires_at=NOW + timedelta(days=90))

    # THEN the job history and the source's state have it, clipped
    status = cli.json("status", "s1", "--jobs", "1")
    assert status["consecutive_failures"] == 1
    assert status["last_error"].startswith("exporter said: xxx")
    assert len(status["last_error"]) <= MAX_ERROR_CHARS
    for recorded in (status["last_job"], status["recent_jobs"][0]):
        assert recorded["job_id"] == "run-big" and recorded["status"] == "error"
        assert recorded["error"] == status["last_error"]
        assert len(recorded["notes"]) == MAX_NOTES
        assert recorded["notes"][0].startswith("note 0 yyy")
        assert all(len(n) <= MAX_NOTE_CHARS for n in recorded["notes"])
        assert "31 more notes" in recorded["notes"][-1]
    assert "600015 chars" in status["last_error"]


def test_a_short_job_result_is_stored_unchanged(cli: Cli) -> None:
    cli.json("sources", "put", "s1", *GOOD)
    job = JobResult(job_id="run-small", job="collect", source_id="s1", started_at=NOW,
                    status=JobStatus.ERROR, finished_at=NOW, error="e" * MAX_ERROR_CHARS,
                    error_type="ExporterError", notes=["n" * MAX_NOTE_CHARS] * MAX_NOTES)
    cli.app.state.sync.record_result(job, expires_at=NOW + timedelta(days=90))

    (recorded,) = cli.app.state.sync.list_jobs("s1", 1)
    assert recorded["error"] == job.error and recorded["notes"] == job.notes


def test_a_fake_store_lists_sources_as_before() -> None:
    """Stores without ``list_source_entries`` (the fakes) still list through list_sources."""
    from tests.support.fakes import fake_state_stores

    state = fake_state_stores()
    state.sources.put_source(SourceConfig("a", "http://127.0.0.1:9", T0))
    assert [d["source_id"] for d in source_documents(state, NOW)] == ["a"]
