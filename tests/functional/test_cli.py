"""The operator CLI contract (shared/spec/operator-cli.md), in-process on moto and, once, as the
real console script against DynamoDB Local."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from minutemeter.adapters.dynamo.schema import create_tables
from minutemeter.adapters.system import TimeoutBudget
from minutemeter.bootstrap import App, bootstrap
from minutemeter.cli import COLLECTOR_TIMEOUT_SECONDS
from minutemeter.domain.model import ClockGuardAction, ResetPolicy, SourceConfig, SourceKind
from minutemeter.local.ddb import LOCAL_CREDENTIALS, DynamoDBLocal
from minutemeter.local.exporter import (
    SampleExporter,
    StaticHistory,
    SyntheticCounters,
    account_ids,
)
from minutemeter.settings import Settings
from tests.support.cli import InProcessCli
from tests.support.clock import FakeClock

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=40)
ACCOUNTS = account_ids(3)
MINUTE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:00Z$")
EXPORT_FIELDS = {
    "ledger_id", "source_id", "node_id", "account_id", "minute", "bytes", "included_bytes",
    "billable_bytes", "amount", "pricing_rule_version",
}


class Cli(InProcessCli):
    """``minutemeter`` in-process on one App, with the test's clock."""

    def __init__(self, app: App, clock: FakeClock, capsys: pytest.CaptureFixture[str]) -> None:
        super().__init__(app, capsys)
        self.clock = clock

    def put_source(self, url: str, source_id: str = "s1", *extra: str) -> dict[str, Any]:
        document: dict[str, Any] = self.json(
            "sources", "put", source_id, "--url", url, "--start", "2026-11-22T10:02:00Z",
            "--lag", "60", *extra,
        )
        return document


def _app(clock: FakeClock, **settings: Any) -> App:
    config = Settings(ledger_table="cli-ledger", state_table="cli-state", commit_concurrency=1,
                      http_retries=0, http_timeout_seconds=5, **settings)
    return bootstrap(config, clock=clock, session=boto3.session.Session(region_name="us-east-1"))


@pytest.fixture
def bare(capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    """The CLI on moto, tables not created."""
    with mock_aws():
        clock = FakeClock(NOW)
        yield Cli(_app(clock), clock, capsys)


@pytest.fixture
def cli(bare: Cli) -> Cli:
    """The CLI on moto with both tables."""
    settings = bare.app.settings
    create_tables(bare.app.dynamodb, ledger_table=settings.ledger_table,
                  state_table=settings.state_table)
    return bare


@pytest.fixture(scope="module")
def _counters_server() -> Iterator[SampleExporter]:
    # Shared: stopping a sample exporter takes up to 0.5 s (serve_forever's poll interval).
    with SampleExporter(SyntheticCounters(ACCOUNTS, T0, end=NOW)) as exporter:
        yield exporter


@pytest.fixture
def counters_exporter(_counters_server: SampleExporter) -> SampleExporter:
    """Three accounts, a snapshot every 15 s from 10:00 to 10:40, well-behaved."""
    _counters_server.fault = None
    return _counters_server


# -- tables -----------------------------------------------------------------------------------
def test_tables_create_is_idempotent(bare: Cli) -> None:
    first = bare.json("tables", "create")
    again = bare.json("tables", "create")

    assert first == {"tables": [{"table": "cli-ledger", "status": "created"},
                                {"table": "cli-state", "status": "created"}]}
    assert again == {"tables": [{"table": "cli-ledger", "status": "exists"},
                                {"table": "cli-state", "status": "exists"}]}
    ttl = bare.app.dynamodb.describe_time_to_live(TableName="cli-state")
    assert ttl["TimeToLiveDescription"] == {"TimeToLiveStatus": "ENABLED",
                                            "AttributeName": "expires_at"}


# -- sources ----------------------------------------------------------------------------------
ALL_OPTIONS = [
    "--url", "http://127.0.0.1:8080/base", "--node-id", "node-7", "--env", "staging",
    "--start", "2026-11-22T11:02:30+01:00", "--lag", "120", "--max-window", "900",
    "--reset-policy", "from-zero", "--lease-seconds", "30",
    "--token-secret", "arn:aws:secretsmanager:us-east-1:123456789012:secret:tok-AbCdEf",
    "--clock-tolerance", "600", "--clock-guard", "pause", "--clock-margin-ms", "250",
    "--kind", "exporter",
]


def test_sources_put_with_every_option(cli: Cli) -> None:
    document = cli.json("sources", "put", "s1", *ALL_OPTIONS)

    assert document == {
        "source_id": "s1",
        "url": "http://127.0.0.1:8080/base",
        "node_id": "node-7",
        "env": "staging",
        "start": "2026-11-22T10:03:00Z",  # +01:00 to UTC, then up to the next whole minute
        "lag_seconds": 120,
        "max_window_seconds": 900,
        "reset_policy": "from-zero",
        "lease_seconds": 30,
        "token_secret": "arn:aws:secretsmanager:us-east-1:123456789012:secret:tok-AbCdEf",
        "clock_tolerance_seconds": 600,
        "enabled": True,
        "clock_guard": "pause",
        "clock_margin_ms": 250,
        "kind": "exporter",
    }
    assert cli.app.state.sources.get_source("s1") == SourceConfig(
        source_id="s1", url="http://127.0.0.1:8080/base", start=T0 + timedelta(minutes=3),
        node_id="node-7", env="staging", lag_seconds=120, max_window_seconds=900,
        reset_policy=ResetPolicy.FROM_ZERO, lease_seconds=30,
        token_secret="arn:aws:secretsmanager:us-east-1:123456789012:secret:tok-AbCdEf",
        clock_tolerance_seconds=600, clock_guard=ClockGuardAction.PAUSE, clock_margin_ms=250,
    )


def test_sources_put_update_keeps_unspecified_fields(cli: Cli) -> None:
    created = cli.json("sources", "put", "s1", *ALL_OPTIONS)
    updated = cli.json("sources", "put", "s1", "--lag", "0")
    moved = cli.json("sources", "put", "s1", "--url", "https://exporter.example:9443")

    assert updated == {**created, "lag_seconds": 0}
    assert moved == {**created, "lag_seconds": 0, "url": "https://exporter.example:9443"}
    assert cli.json("sources", "list")[0]["url"] == "https://exporter.example:9443"


def test_a_new_source_gets_defaults_and_starts_at_the_next_minute(cli: Cli) -> None:
    cli.clock.set(T0 + timedelta(minutes=40, seconds=15))
    document = cli.json("sources", "put", "s1", "--url", "http://127.0.0.1:1")

    assert document == {
        "source_id": "s1", "url": "http://127.0.0.1:1", "node_id": None, "env": None,
        "start": "2026-11-22T10:41:00Z", "lag_seconds": 60, "max_window_seconds": 3600,
        "reset_policy": "skip", "lease_seconds": 60, "token_secret": None,
        "clock_tolerance_seconds": None, "enabled": True, "clock_guard": "widen",
        "clock_margin_ms": 1000, "kind": "exporter",
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sources", "put", "new", "--lag", "60"], "needs --url"),
        (["sources", "put", "s1", "--lag", "-1"], "--lag"),
        (["sources", "put", "s1", "--lag", "86401"], "--lag"),
        (["sources", "put", "s1", "--max-window", "90"], "--max-window"),
        (["sources", "put", "s1", "--max-window", "0"], "--max-window"),
        (["sources", "put", "s1", "--max-window", str(7 * 86400 + 60)], "--max-window"),
        (["sources", "put", "s1", "--lease-seconds", "4"], "--lease-seconds"),
        (["sources", "put", "s1", "--clock-tolerance", "0"], "--clock-tolerance"),
        (["sources", "put", "s1", "--url", "ftp://127.0.0.1/x"], "--url"),
        (["sources", "put", "s1", "--url", "127.0.0.1:8080"], "--url"),
        (["sources", "put", "s1", "--start", "yesterday"], "--start"),
        (["sources", "put", "s1", "--start", "2026-11-22T10:00:00"], "--start"),  # no offset
        (["sources", "put", "s1", "--start", "2026-02-30T10:00:00Z"], "--start"),
        (["sources", "put", "bad id", "--url", "http://127.0.0.1:1"], "source id"),
        (["sources", "put", "_x", "--url", "http://127.0.0.1:1"], "source id"),
        (["sources", "put", "a/b", "--url", "http://127.0.0.1:1"], "source id"),
        (["sources", "put", "x" * 65, "--url", "http://127.0.0.1:1"], "source id"),
    ],
)
def test_sources_put_bad_arguments_exit_2_and_change_nothing(
    cli: Cli, argv: list[str], message: str
) -> None:
    before = cli.json("sources", "put", "s1", *ALL_OPTIONS)
    code, out = cli.run(*argv)

    assert code == 2
    assert out == ""
    assert message in cli.err and cli.err.startswith("minutemeter: ")
    assert cli.json("sources", "list") == [{**before, **_fresh_state()}]


def _fresh_state() -> dict[str, Any]:
    return {"last_completed_until": None, "baseline_taken_at": None, "last_success_at": None,
            "last_error": None, "last_error_at": None, "consecutive_failures": 0,
            "watermark_lag_seconds": None, "last_job": None, "health": None, "lease": None}


@pytest.mark.parametrize(
    "argv",
    [
        ["sources", "put", "s1", "--url", "http://127.0.0.1:1", "--reset-policy", "nope"],
        ["sources", "put", "s1", "--url", "http://127.0.0.1:1", "--kind", "graphite"],
        ["sources", "put", "s1", "--url", "http://127.0.0.1:1", "--lag", "1.5"],
        ["sources", "put", "--url", "http://127.0.0.1:1"],
        ["sources"],
        ["profiles", "put", ACCOUNTS[0], "--price-per-byte", "1"],  # required options missing
        ["frobnicate"],
    ],
)
def test_argparse_errors_exit_2(cli: Cli, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.run(*argv)
    assert caught.value.code == 2
    assert cli.app.state.sources.list_sources() == []


def test_sources_list_shows_sync_state(cli: Cli, counters_exporter: SampleExporter) -> None:
    assert cli.json("sources", "list") == []
    cli.put_source(counters_exporter.url, "s1")
    cli.put_source(counters_exporter.url, "s2")
    cli.json("collect", "s1")

    listed = {d["source_id"]: d for d in cli.json("sources", "list")}

    assert set(listed) == {"s1", "s2"}
    assert listed["s1"]["last_completed_until"] == "2026-11-22T10:39:00Z"
    assert listed["s1"]["watermark_lag_seconds"] == 60.0
    assert listed["s1"]["last_job"]["status"] == "ok"
    assert listed["s1"]["baseline_taken_at"] is not None
    assert listed["s2"]["last_completed_until"] is None
    assert listed["s2"]["last_job"] is None


def test_the_kind_defaults_to_exporter_and_is_shown_wherever_sources_are(cli: Cli) -> None:
    created = cli.json("sources", "put", "s1", "--url", "http://127.0.0.1:9")
    explicit = cli.json("sources", "put", "s2", "--url", "http://127.0.0.1:9", "--kind",
                        "exporter")

    assert created["kind"] == explicit["kind"] == "exporter"
    assert [d["kind"] for d in cli.json("sources", "list")] == ["exporter", "exporter"]
    assert cli.json("status", "s1")["kind"] == "exporter"
    assert [d["kind"] for d in cli.json("status")] == ["exporter", "exporter"]
    assert cli.app.state.sources.get_source("s1").kind is SourceKind.EXPORTER


def test_an_unknown_kind_is_one_line_and_exit_2(
    cli: Cli, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.run("sources", "put", "s1", "--url", "http://127.0.0.1:9", "--kind", "graphite")
    err = capsys.readouterr().err

    assert caught.value.code == 2
    assert err.startswith("minutemeter sources put: error: argument --kind: invalid choice: "
                          "'graphite'") and err.count("\n") == 1
    assert "exporter" in err
    assert cli.json("sources", "list") == []


# -- collect ----------------------------------------------------------------------------------
def test_collect_prints_the_job_and_exits_0(cli: Cli, counters_exporter: SampleExporter) -> None:
    cli.put_source(counters_exporter.url)
    job = cli.json("collect", "s1")

    assert job["status"] == "ok" and job["error"] is None
    assert (job["source_id"], job["job"], job["job_id"]) == ("s1", "collect", "run-0001")
    assert job["window_since"] == "2026-11-22T10:02:00.000000Z"
    assert job["window_until"] == job["completed_until"] == "2026-11-22T10:39:00.000000Z"
    assert job["caught_up"] is True
    assert job["written_minutes"] == 37 * len(ACCOUNTS)
    assert job["quarantined_samples"] == 0
    assert len(cli.lines("ledger", "export")) == job["written_minutes"]

    again = cli.json("collect", "s1")  # nothing new: still ok, nothing written
    assert (again["status"], again["written_minutes"], again["pages"]) == ("ok", 0, 0)


def _collector_function_timeout() -> int:
    """``Timeout`` of ``CollectorFunction`` in template.yaml (read as text: it has CFN tags)."""
    template = (Path(__file__).resolve().parents[2] / "template.yaml").read_text()
    after = template.split("\n  CollectorFunction:\n", 1)[1]
    block = re.split(r"^  \S", after, maxsplit=1, flags=re.M)[0]  # up to the next resource
    match = re.search(r"^ {6}Timeout: (\d+)$", block, re.M)
    assert match is not None
    return int(match[1])


def test_collect_timeout_defaults_to_the_collector_functions_timeout() -> None:
    assert COLLECTOR_TIMEOUT_SECONDS == _collector_function_timeout() == 300


@pytest.mark.parametrize("value", ["0", "-1", "86401", "nan", "inf", "1e400"])
def test_collect_timeout_out_of_range_exits_2(cli: Cli, value: str) -> None:
    cli.json("sources", "put", "s1", "--url", "http://127.0.0.1:9")
    code, out = cli.run("collect", "s1", "--timeout", value)
    assert (code, out) == (2, "")
    assert cli.err.startswith("minutemeter: --timeout") and cli.err.count("\n") == 1
    assert cli.app.state.sync.list_jobs("s1", 5) == []  # no run was started


def test_collect_runs_within_its_timeout(
    capsys: pytest.CaptureFixture[str], counters_exporter: SampleExporter
) -> None:
    # GIVEN a collector that keeps 290 s of its budget as the deadline margin
    with mock_aws():
        clock = FakeClock(NOW)
        run = Cli(_app(clock, deadline_margin_seconds=290), clock, capsys)
        create_tables(run.app.dynamodb, ledger_table="cli-ledger", state_table="cli-state")
        run.put_source(counters_exporter.url)
        # WHEN collect runs with 280 s, then with the default (the function's 300 s)
        short = run.json("collect", "s1", "--timeout", "280")
        full = run.json("collect", "s1")
    # THEN the short budget stops before the first chunk; the default one collects everything
    assert short["written_minutes"] == 0 and short["completed_until"] is None
    assert "to respect the deadline" in short["notes"][0]
    assert full["written_minutes"] == 37 * len(ACCOUNTS) and full["caught_up"] is True


def test_the_timeout_budget_counts_down_on_the_monotonic_clock() -> None:
    clock = FakeClock(NOW)
    budget = TimeoutBudget(clock, 30)
    clock.advance(12.5)
    assert budget.remaining_seconds() == 17.5


def _raw(at: datetime, *samples: dict[str, object]) -> tuple[datetime, dict[str, object]]:
    return at, {"taken_at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "samples": list(samples)}


def test_collect_exits_3_when_samples_are_quarantined(cli: Cli) -> None:
    a = ACCOUNTS[0]
    history = StaticHistory([
        _raw(T0 + timedelta(minutes=2, seconds=5), {"account_id": a, "total_bytes": 100}),
        _raw(T0 + timedelta(minutes=3, seconds=5), {"account_id": a, "total_bytes": 250},
             {"account_id": "not-a-uuid", "total_bytes": 5}),
    ])
    with SampleExporter(history) as exporter:
        cli.put_source(exporter.url)
        job = cli.json("collect", "s1", code=3)

    assert job["status"] == "partial"
    assert (job["quarantined_samples"], job["written_minutes"]) == (1, 1)
    (record,) = cli.lines("quarantine", "list", "s1")
    assert record["reason"] == "account_id_invalid"
    assert record["account_id"] == "not-a-uuid"
    assert record["run_id"] == job["job_id"]
    assert json.loads(record["raw"]) == {"account_id": "not-a-uuid", "total_bytes": 5}
    (entry,) = cli.lines("ledger", "export")
    assert (entry["account_id"], entry["bytes"]) == (a, 150)


def test_collect_exits_1_on_a_protocol_error_and_keeps_the_watermark(
    cli: Cli, counters_exporter: SampleExporter
) -> None:
    counters_exporter.fault = lambda number, query, document: (
        200, json.dumps(dict(document, node_id=None)).encode()
    )
    cli.put_source(counters_exporter.url)
    job = cli.json("collect", "s1", code=1)

    assert job["status"] == "error"
    assert job["error_type"] == "SourceProtocolError" and "node_id" in job["error"]
    status = cli.json("status", "s1")
    assert status["last_completed_until"] is None
    assert status["consecutive_failures"] == 1
    assert status["last_error"] == job["error"]
    assert cli.lines("ledger", "export") == []


def test_collect_exits_1_for_an_unknown_source(cli: Cli) -> None:
    job = cli.json("collect", "ghost", code=1)

    assert job["status"] == "error"
    assert job["error_type"] == "SourceNotFoundError"
    assert "ghost" in job["error"]
    assert cli.json("sources", "list") == []


def test_collect_with_an_unparseable_counter_still_prints_the_job(cli: Cli) -> None:
    big = '{"node_id":"node-a","env":"prod","has_more":false,"snapshots":[{"taken_at":' \
          '"2026-11-22T10:02:05Z","samples":[{"account_id":"' + ACCOUNTS[0] + \
          '","total_bytes":' + "9" * 5000 + "}]}]}"
    with SampleExporter(StaticHistory([]), fault=lambda *_: (200, big.encode())) as exporter:
        cli.put_source(exporter.url)
        job = cli.json("collect", "s1", code=1)
    assert job["status"] == "error"


# -- ledger export ----------------------------------------------------------------------------
@pytest.fixture
def collected(cli: Cli, counters_exporter: SampleExporter) -> list[dict[str, Any]]:
    """s1 collected once over [10:02, 10:39): the export of every entry."""
    cli.put_source(counters_exporter.url)
    cli.json("collect", "s1")
    return cli.lines("ledger", "export")


def test_ledger_export_is_json_lines_with_the_contract_fields(
    cli: Cli, collected: list[dict[str, Any]]
) -> None:
    assert len(collected) == 37 * len(ACCOUNTS)
    for entry in collected:
        assert set(entry) >= EXPORT_FIELDS
        assert entry["source_id"] == "s1" and entry["node_id"] == "node-a"
        assert entry["account_id"] in ACCOUNTS
        assert MINUTE_RE.match(entry["minute"]), entry["minute"]
        assert isinstance(entry["amount"], str)
        price = Decimal(entry["price_per_byte"]) * Decimal(entry["multiplier"])
        assert Decimal(entry["amount"]) == entry["billable_bytes"] * price
        assert entry["bytes"] == entry["included_bytes"] + entry["billable_bytes"]
        assert entry["pricing_rule_version"] == "default-v1"
        uuid.UUID(entry["ledger_id"])
    minutes = {e["minute"] for e in collected}
    assert min(minutes) == "2026-11-22T10:02:00Z" and max(minutes) == "2026-11-22T10:38:00Z"
    assert len({e["ledger_id"] for e in collected}) == len(collected)


def test_ledger_export_filters(cli: Cli, collected: list[dict[str, Any]]) -> None:
    account = ACCOUNTS[1]
    by_account = cli.lines("ledger", "export", "--account", account.upper())
    assert {e["account_id"] for e in by_account} == {account}
    assert len(by_account) == 37

    window = ["--since", "2026-11-22T10:10:00Z", "--until", "2026-11-22T10:15:00Z"]
    windowed = cli.lines("ledger", "export", *window)
    assert sorted({e["minute"] for e in windowed}) == [
        f"2026-11-22T10:{m}:00Z" for m in range(10, 15)
    ]
    assert len(windowed) == 5 * len(ACCOUNTS)

    # source + account takes the query path; the result must be the same as the scan path
    narrow = cli.lines("ledger", "export", "--source", "s1", "--account", account, *window)
    assert sorted(e["minute"] for e in narrow) == [f"2026-11-22T10:{m}:00Z" for m in range(10, 15)]
    assert sorted(narrow, key=lambda e: e["minute"]) == sorted(
        (e for e in windowed if e["account_id"] == account), key=lambda e: e["minute"]
    )
    last = cli.lines("ledger", "export", "--since", "2026-11-22T10:38:00Z")
    assert sorted(last, key=lambda e: e["account_id"]) == sorted(
        (e for e in collected if e["minute"] == "2026-11-22T10:38:00Z"),
        key=lambda e: e["account_id"],
    )
    assert len(last) == len(ACCOUNTS)
    assert cli.lines("ledger", "export", "--source", "other") == []
    assert cli.lines("ledger", "export", "--until", "2026-11-22T10:02:00Z") == []


@pytest.mark.parametrize(
    "window",
    [
        ["--since", "2026-11-22T10:10:00Z", "--until", "2026-11-22T10:10:00Z"],
        ["--since", "2026-11-22T10:11:00Z", "--until", "2026-11-22T10:10:00Z"],
        ["--since", "10:10"],
        ["--until", "2026-11-22"],
    ],
)
def test_ledger_export_bad_window_exits_2(cli: Cli, window: list[str]) -> None:
    code, out = cli.run("ledger", "export", *window)
    assert (code, out) == (2, "")
    assert cli.err.startswith("minutemeter: ")


# -- status, records, profiles ----------------------------------------------------------------
def test_status_json_and_table(cli: Cli, counters_exporter: SampleExporter) -> None:
    cli.put_source(counters_exporter.url)
    job = cli.json("collect", "s1")

    one = cli.json("status", "s1")
    assert one["source_id"] == "s1"
    assert one["last_completed_until"] == "2026-11-22T10:39:00Z"
    assert one["last_success_at"] == "2026-11-22T10:40:00Z"
    assert (one["consecutive_failures"], one["watermark_lag_seconds"]) == (0, 60.0)
    assert one["last_job"]["job_id"] == job["job_id"]
    assert "recent_jobs" not in one
    assert cli.json("status") == [one]
    with_jobs = cli.json("status", "s1", "--jobs", "2")
    assert [j["job_id"] for j in with_jobs["recent_jobs"]] == [job["job_id"]]

    code, table = cli.run("status", "--table")
    assert code == 0
    header, rule, row = table.splitlines()
    assert header.split() == ["source", "watermark", "lag", "s", "last", "run", "health",
                              "fail", "rate", "written", "replayed", "quarantined", "failures",
                              "last", "error"]
    assert set(rule.replace(" ", "")) == {"-"}
    # one run, ok: the health window widened to 150 minutes looking for three runs
    assert row.split() == ["s1", "2026-11-22T10:39:00Z", "60", "ok", "healthy", "0%", "of", "1",
                           "in", "150m", str(job["written_minutes"]), "0", "0", "0", "-"]


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "s1", "--jobs", "-1"],
        ["quarantine", "list", "s1", "--limit", "0"],
        ["resets", "list", "s1", "--limit", "-5"],
    ],
)
def test_a_non_positive_limit_exits_2(cli: Cli, argv: list[str]) -> None:
    cli.put_source("http://127.0.0.1:1")
    with pytest.raises(SystemExit) as caught:  # argparse rejects it, like every bad argument
        cli.run(*argv)
    assert caught.value.code == 2
    assert "must be >= 1" in cli.capsys.readouterr().err


def test_status_of_an_unknown_source_exits_1(cli: Cli) -> None:
    code, out = cli.run("status", "ghost")
    assert (code, out) == (1, "")
    assert "SourceNotFoundError" in cli.err


def test_resets_list(cli: Cli) -> None:
    resets = {ACCOUNTS[0]: T0 + timedelta(minutes=7, seconds=40)}
    counters = SyntheticCounters(ACCOUNTS[:2], T0, end=NOW, resets=resets)
    with SampleExporter(counters) as exporter:
        cli.put_source(exporter.url)
        job = cli.json("collect", "s1")
    assert job["counter_resets"] == 1

    (record,) = cli.lines("resets", "list", "s1")
    assert record["account_id"] == ACCOUNTS[0]
    assert record["policy"] == "skip" and record["billed_bytes"] == 0
    assert record["current_bytes"] < record["previous_bytes"]
    assert record["taken_at"].startswith("2026-11-22T10:07:4")
    assert cli.lines("quarantine", "list", "s1") == []
    assert cli.run("resets", "list", "ghost")[0] == 1


def test_profiles_put_applies_to_later_entries_only(
    cli: Cli, counters_exporter: SampleExporter
) -> None:
    account, other = ACCOUNTS[0], ACCOUNTS[1]
    cli.put_source(counters_exporter.url)
    cli.clock.set(T0 + timedelta(minutes=20))
    cli.json("collect", "s1")  # [10:02, 10:19) at the default profile

    profile = cli.json("profiles", "put", account.upper(), "--included-bytes", "10000000000",
                       "--price-per-byte", "0.000000002", "--multiplier", "1.5",
                       "--pricing-version", "promo-1")
    assert profile["account_id"] == account
    assert profile["included_bytes"] == 10_000_000_000
    assert Decimal(profile["price_per_byte"]) == Decimal("0.000000002")
    assert (Decimal(profile["multiplier"]), profile["pricing_rule_version"]) == (
        Decimal("1.5"), "promo-1")

    cli.clock.set(NOW)
    cli.json("collect", "s1")  # [10:19, 10:39) with the new profile
    entries = cli.lines("ledger", "export", "--account", account)
    before = [e for e in entries if e["minute"] < "2026-11-22T10:19:00Z"]
    after = [e for e in entries if e["minute"] >= "2026-11-22T10:19:00Z"]

    assert len(before) == 17 and len(after) == 20
    assert {(e["pricing_rule_version"], e["included_bytes"]) for e in before} == {
        ("default-v1", 0)}
    assert all(e["included_bytes"] == e["bytes"] and e["billable_bytes"] == 0 for e in after)
    assert {e["pricing_rule_version"] for e in after} == {"promo-1"}
    assert all(Decimal(e["amount"]) == 0 for e in after)
    others = cli.lines("ledger", "export", "--account", other)
    assert {e["pricing_rule_version"] for e in others} == {"default-v1"}


@pytest.mark.parametrize(
    "options",
    [
        ["--included-bytes", "-1", "--price-per-byte", "0.1", "--pricing-version", "v"],
        ["--included-bytes", "0", "--price-per-byte", "-0.1", "--pricing-version", "v"],
        ["--included-bytes", "0", "--price-per-byte", "cheap", "--pricing-version", "v"],
        ["--included-bytes", "0", "--price-per-byte", "NaN", "--pricing-version", "v"],
        ["--included-bytes", "0", "--price-per-byte", "1", "--multiplier", "x",
         "--pricing-version", "v"],
    ],
)
def test_profiles_put_bad_values_exit_2(cli: Cli, options: list[str]) -> None:
    code, out = cli.run("profiles", "put", ACCOUNTS[0], *options)
    assert (code, out) == (2, "")
    assert cli.app.state.profiles.get_profiles([ACCOUNTS[0]]) == {}


# -- the real console script ------------------------------------------------------------------
def _console_script() -> list[str]:
    script = Path(sys.executable).parent / "minutemeter"
    return [str(script)] if script.exists() else [sys.executable, "-m", "minutemeter.cli"]


def test_console_script_prints_pure_json_on_stdout_and_logs_on_stderr(
    ddb_local: DynamoDBLocal,
) -> None:
    suffix = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        **LOCAL_CREDENTIALS,
        "AWS_ENDPOINT_URL_DYNAMODB": ddb_local.endpoint,
        "MINUTEMETER_LEDGER_TABLE": f"cli-ledger-{suffix}",
        "MINUTEMETER_STATE_TABLE": f"cli-state-{suffix}",
    }

    def run(*argv: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*_console_script(), *argv], env=env, capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == code, done.stderr
        return done

    created = run("tables", "create")
    assert json.loads(created.stdout) == {"tables": [
        {"table": f"cli-ledger-{suffix}", "status": "created"},
        {"table": f"cli-state-{suffix}", "status": "created"},
    ]}

    start = (datetime.now(UTC) - timedelta(minutes=6)).replace(second=0, microsecond=0)
    counters = SyntheticCounters(ACCOUNTS[:2], start - timedelta(minutes=1),
                                 live_clock=lambda: datetime.now(UTC))
    with SampleExporter(counters) as exporter:
        run("sources", "put", "s1", "--url", exporter.url, "--start",
            start.strftime("%Y-%m-%dT%H:%M:%SZ"), "--lag", "0")
        collected = run("-v", "collect", "s1")  # -v: debug logs (botocore's too) on stderr
    job = json.loads(collected.stdout)  # one JSON document and nothing else
    assert job["status"] == "ok" and job["written_minutes"] >= 5 * 2
    assert "DEBUG" in collected.stderr and "chunk committed" in collected.stderr
    assert "DEBUG" not in collected.stdout

    exported = run("ledger", "export", "--source", "s1")
    lines = exported.stdout.splitlines()
    assert len(lines) == job["written_minutes"]
    assert all(json.loads(line)["source_id"] == "s1" for line in lines)
    assert f"exported {len(lines)} ledger entries" in exported.stderr

    failed = run("status", "ghost", code=1)
    assert failed.stdout == ""
    assert "SourceNotFoundError" in failed.stderr


def test_a_disabled_source_is_skipped_until_enabled(
    cli: Cli, counters_exporter: SampleExporter
) -> None:
    cli.put_source(counters_exporter.url, "s1")
    assert cli.json("sources", "disable", "s1")["enabled"] is False
    code, out = cli.run("collect", "s1")
    job = json.loads(out)
    assert code == 4 and job["status"] == "skipped" and "disabled" in job["notes"][0]
    assert cli.app.state.sync.get_state("s1").last_completed_until is None
    assert cli.json("sources", "enable", "s1")["enabled"] is True
    code, _ = cli.run("collect", "s1")
    assert code == 0


def test_disabling_an_unknown_source_creates_nothing(cli: Cli) -> None:
    code, out = cli.run("sources", "disable", "ghost")
    assert (code, out) == (1, "")
    assert cli.app.state.sources.list_sources() == []


def test_reconcile_dry_run_exits_5_on_differences_and_confirm_corrects_them(
    cli: Cli, counters_exporter: SampleExporter, capsys: pytest.CaptureFixture[str]
) -> None:
    cli.put_source(counters_exporter.url)
    cli.json("collect", "s1")
    window = ["--since", "2026-11-22T10:10:00Z", "--until", "2026-11-22T10:30:00Z"]
    assert cli.json("reconcile", "s1", *window, "--dry-run")["status"] == "ok"

    def raised(number: int, query: Any, document: dict[str, Any]) -> tuple[int, bytes]:
        """The exporter now reports account 0 higher from 10:20 on (a corrected counter)."""
        for snapshot in document["snapshots"]:
            if snapshot["taken_at"] >= "2026-11-22T10:20":
                for sample in snapshot["samples"]:
                    if sample["account_id"] == ACCOUNTS[0]:
                        sample["total_bytes"] += 5_000
        return 200, json.dumps(document).encode()

    counters_exporter.fault = raised
    dry = cli.json("reconcile", "s1", *window, "--dry-run", code=5)
    assert dry["status"] == "differences" and dry["difference_count"] == 1
    (difference,) = dry["differences"]
    assert (difference["account_id"], difference["minute"], difference["difference_bytes"]) == (
        ACCOUNTS[0], "2026-11-22T10:20:00Z", 5_000)
    confirmed = cli.json("reconcile", "s1", *window)
    assert (confirmed["status"], confirmed["corrections_written"]) == ("corrected", 1)
    assert cli.json("reconcile", "s1", *window, "--dry-run")["status"] == "ok"
    entries = cli.lines("ledger", "export", "--account", ACCOUNTS[0])
    (correction,) = [e for e in entries if e["kind"] == "correction"]
    assert (correction["minute"], correction["bytes"]) == ("2026-11-22T10:20:00Z", 5_000)


def test_reconcile_refuses_a_bad_window_with_exit_2(
    cli: Cli, counters_exporter: SampleExporter
) -> None:
    cli.put_source(counters_exporter.url)
    cli.json("collect", "s1")
    code, out = cli.run("reconcile", "s1", "--since", "2026-11-22T10:10:30Z",
                        "--until", "2026-11-22T10:30:00Z")
    assert (code, out) == (2, "") and "whole minutes" in cli.err


def test_exported_corrections_name_the_entry_they_correct(
    cli: Cli, counters_exporter: SampleExporter
) -> None:
    cli.put_source(counters_exporter.url)
    cli.json("collect", "s1")
    # the exporter now says the counters stood still from 10:15 on (flat, not absent: an
    # absent sample is no evidence, and reconcile would refuse to take the minute back)
    history = counters_exporter.history
    assert isinstance(history, SyntheticCounters)
    before = [values for at, values in history.history(datetime(2026, 11, 22, 10, 20, tzinfo=UTC))
              if at < datetime(2026, 11, 22, 10, 15, tzinfo=UTC)][-1]

    def flat(snapshot: dict[str, Any]) -> dict[str, Any]:
        if snapshot["taken_at"] < "2026-11-22T10:15":
            return snapshot
        return {**snapshot, "samples": [{**sample, "total_bytes": before[sample["account_id"]]}
                                        for sample in snapshot["samples"]]}

    counters_exporter.fault = lambda number, query, document: (200, json.dumps({
        **document, "snapshots": [flat(s) for s in document["snapshots"]],
    }).encode())
    cli.json("reconcile", "s1", "--since", "2026-11-22T10:15:00Z", "--until",
             "2026-11-22T10:16:00Z")
    entries = cli.lines("ledger", "export", "--source", "s1", "--since", "2026-11-22T10:15:00Z",
                        "--until", "2026-11-22T10:16:00Z")
    usage = {e["account_id"]: e for e in entries if e["kind"] == "usage"}
    corrections = [e for e in entries if e["kind"] == "correction"]
    assert len(corrections) == len(ACCOUNTS)  # the exporter no longer explains the minute
    for correction in corrections:
        original = usage[correction["account_id"]]
        assert correction["corrects"] == original["ledger_id"]
        assert correction["reason"] == "unexplained" and correction["target_bytes"] == 0
        assert correction["bytes"] == -original["bytes"]
        assert correction["included_bytes"] == -original["included_bytes"]
