"""``ledger export`` by Query (issue 11): by source and month, by account and month, resumable
with a cursor, JSON Lines or CSV, and a table Scan only behind ``--all`` (or with neither source
nor account). The service runs on the fakes, moto and DynamoDB Local; the CLI on moto."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import boto3
import pytest
from moto import mock_aws

from minutemeter import cli_statements
from minutemeter.adapters.dynamo.ledger import DynamoLedgerStore
from minutemeter.adapters.dynamo.schema import create_tables
from minutemeter.adapters.dynamo.state.sources import DynamoSourceStore
from minutemeter.bootstrap import bootstrap
from minutemeter.domain.errors import InputError
from minutemeter.domain.model import LedgerEntry, SourceConfig
from minutemeter.local.exporter import SampleExporter, SyntheticCounters, account_ids
from minutemeter.ports import LedgerFilter
from minutemeter.service.ledger_export import (
    ExportRequest,
    Position,
    decode_cursor,
    encode_cursor,
    export_entries,
)
from minutemeter.settings import Settings
from tests.support.backends import Backend
from tests.support.cli import InProcessCli
from tests.support.clock import FakeClock
from tests.support.fakes import FakeSourceStore
from tests.support.harness import deps_for, run_until_caught_up

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

T0 = datetime(2026, 11, 30, 23, 50, tzinfo=UTC)  # the billing crosses into December
NOW = T0 + timedelta(minutes=22)
ACCOUNTS = account_ids(3)
SOURCES = ("s1", "s2")
MONTHS = ("2026-11", "2026-12")


def _bill(backend: Backend) -> None:
    """Two sources (each its own node) bill three accounts from 23:51 to about 00:10."""
    counters = SyntheticCounters(ACCOUNTS, T0, end=NOW)
    for source_id, node in zip(SOURCES, ("node-a", "node-b"), strict=True):
        with SampleExporter(counters, node_id=node, page_size=17) as exporter:
            backend.state.sources.put_source(SourceConfig(
                source_id, exporter.url, T0 + timedelta(minutes=1), lag_seconds=60,
                max_window_seconds=1800))
            run_until_caught_up(deps_for(backend, FakeClock(NOW)), source_id)


def _month(backend: Backend, month: str) -> list[LedgerEntry]:
    start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    until = (start + timedelta(days=32)).replace(day=1)
    return list(backend.ledger.export(LedgerFilter(since=start, until=until)))


def _ids(entries: Iterator[LedgerEntry] | list[LedgerEntry]) -> list[str]:
    return [e.ledger_id for e in entries]


def _export(backend: Backend, **request: Any) -> list[tuple[LedgerEntry, Position | None]]:
    found = export_entries(backend.ledger, backend.state.sources, ExportRequest(**request), NOW)
    return [(e.entry, e.position) for e in found]


@pytest.fixture
def billed(any_backend: Backend) -> Backend:
    _bill(any_backend)
    return any_backend


# -- the service on every backend -------------------------------------------------------------
def test_by_source_and_by_account_are_the_months_entries(billed: Backend) -> None:
    for month in MONTHS:
        # GIVEN the month's entries as the scan sees them
        scanned = _month(billed, month)
        assert {e.source_id for e in scanned} == set(SOURCES)
        assert {e.usage.account_id for e in scanned} == set(ACCOUNTS)
        # WHEN the month is exported source by source, and account by account
        by_source = [pair for s in SOURCES for pair in _export(billed, source_id=s, month=month)]
        by_account = [pair for a in sorted(ACCOUNTS)
                      for pair in _export(billed, account_id=a, month=month)]
        # THEN each is exactly the scan's entries, each once
        for exported in (by_source, by_account):
            entries = [e for e, _ in exported]
            assert sorted(_ids(entries)) == sorted(_ids(scanned))
            assert sorted(entries, key=lambda e: e.ledger_id) == sorted(
                scanned, key=lambda e: e.ledger_id)
        # AND in the order the cursors follow: positions strictly increasing within a request
        for s in SOURCES:
            positions = [p for _, p in _export(billed, source_id=s, month=month)
                         if p is not None]
            assert positions and positions == sorted(positions)
            assert len(set(positions)) == len(positions) == len(
                [e for e in scanned if e.source_id == s])
            assert all(p.month == month and p.source_id == s for p in positions)


def test_source_and_account_together_is_one_partition(billed: Backend) -> None:
    account = ACCOUNTS[1]
    for month in MONTHS:
        found = [e for e, _ in _export(billed, source_id="s2", account_id=account, month=month)]
        assert found and sorted(_ids(found)) == sorted(
            e.ledger_id for e in _month(billed, month)
            if e.source_id == "s2" and e.usage.account_id == account)


def test_the_first_phase_form_spans_the_months_from_the_start(billed: Backend) -> None:
    # no --month: every month from the sources' earliest start until now, by Query
    everything = list(billed.ledger.export(LedgerFilter()))
    assert {e.quota_month for e in everything} == set(MONTHS)
    for s in SOURCES:
        found = [e for e, _ in _export(billed, source_id=s)]
        assert sorted(_ids(found)) == sorted(e.ledger_id for e in everything if e.source_id == s)
    for a in ACCOUNTS:
        found = [e for e, _ in _export(billed, account_id=a)]
        assert sorted(_ids(found)) == sorted(
            e.ledger_id for e in everything if e.usage.account_id == a)
    # and --since/--until filter the minutes, across the month boundary
    since, until = datetime(2026, 11, 30, 23, 58, tzinfo=UTC), datetime(2026, 12, 1, 0, 3,
                                                                         tzinfo=UTC)
    window = [e for e, _ in _export(billed, account_id=ACCOUNTS[0], since=since, until=until)]
    assert sorted(_ids(window)) == sorted(
        e.ledger_id for e in everything
        if e.usage.account_id == ACCOUNTS[0] and since <= e.usage.minute < until)
    assert {e.usage.minute for e in window} == {since + timedelta(minutes=m) for m in range(5)}


def test_a_source_no_longer_registered_is_found_through_the_marks(billed: Backend) -> None:
    # GIVEN s2 has billed, and its registry record is gone
    _unregister(billed, "s2")
    assert [s.source_id for s in billed.state.sources.list_sources()] == ["s1"]
    # WHEN an account's month is exported THEN s2's entries are there too (the quota item's
    # marks name every (source, node) that reserved in the month)
    for month in MONTHS:
        found = [e for e, _ in _export(billed, account_id=ACCOUNTS[2], month=month)]
        assert {e.source_id for e in found} == set(SOURCES)
        assert sorted(_ids(found)) == sorted(
            e.ledger_id for e in _month(billed, month) if e.usage.account_id == ACCOUNTS[2])


def test_resuming_after_any_entry_gives_exactly_the_rest(billed: Backend) -> None:
    requests: list[dict[str, Any]] = [
        {"source_id": "s1", "month": "2026-12"},
        {"account_id": ACCOUNTS[0], "month": "2026-11"},
        {"account_id": ACCOUNTS[1]},  # both months, both sources
    ]
    for request in requests:
        whole = _export(billed, **request)
        assert len(whole) >= 10
        for cut, (_, position) in enumerate(whole):
            assert position is not None
            after = decode_cursor(encode_cursor(position))
            rest = _export(billed, **request, after=after)
            # no duplicate, no gap
            assert _ids(e for e, _ in rest) == _ids(e for e, _ in whole[cut + 1:]), (request, cut)


def test_cursors_round_trip_and_bad_ones_are_input_errors() -> None:
    position = Position("2026-11", "src.a-1", ACCOUNTS[0], "2026-11-30T23:59:00Z#nø#C0-12")
    cursor = encode_cursor(position)
    assert decode_cursor(cursor) == position
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    for bad in ("", "!!!", "e30", encode_cursor(replace(position, month="2026-13")),
                "W10", "a" * 3000):
        with pytest.raises(InputError):
            decode_cursor(bad)


def _unregister(backend: Backend, source_id: str) -> None:
    if isinstance(backend.state.sources, FakeSourceStore):
        del backend.state.sources.sources[source_id]
        return
    assert isinstance(backend.state.sources, DynamoSourceStore)
    table = backend.state.sources.table
    table.client.delete_item(TableName=table.name,
                             Key={"pk": {"S": "SOURCES"}, "sk": {"S": source_id}})


# -- the CLI, on moto, with every DynamoDB operation recorded ----------------------------------
@dataclass
class Operations:
    """Wraps a DynamoDB client and notes the name of every operation called through it."""

    client: Any
    names: list[str] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)
        if not callable(method) or name.startswith("_") or name in {"meta", "exceptions"}:
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            self.names.append(name)
            return method(*args, **kwargs)
        return call


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[tuple[InProcessCli, Operations]]:
    """The CLI on a billed moto ledger; every DynamoDB operation after the billing recorded."""
    with mock_aws():
        settings = Settings(ledger_table="ex-ledger", state_table="ex-state",
                            commit_concurrency=1, http_retries=0)
        app = bootstrap(settings, clock=FakeClock(NOW),
                        session=boto3.session.Session(region_name="us-east-1"))
        create_tables(app.dynamodb, ledger_table=settings.ledger_table,
                      state_table=settings.state_table)
        _bill(Backend("moto", app.ledger, app.state, app.settings))
        operations = Operations(app.dynamodb)
        assert isinstance(app.ledger, DynamoLedgerStore)
        assert isinstance(app.state.sources, DynamoSourceStore)
        app.ledger.table.client = cast("DynamoDBClient", operations)
        app.state.sources.table.client = cast("DynamoDBClient", operations)  # every state store
        yield InProcessCli(app, capsys), operations


QUERY_FORMS = [
    ("--source", "s1", "--month", "2026-11"),
    ("--account", ACCOUNTS[0], "--month", "2026-12"),
    ("--source", "s2", "--account", ACCOUNTS[2], "--month", "2026-12"),
    ("--source", "s1"),
    ("--account", ACCOUNTS[1], "--since", "2026-11-30T23:55:00Z"),
]


def test_no_form_with_a_source_or_an_account_scans(
    cli: tuple[InProcessCli, Operations],
) -> None:
    runner, operations = cli
    for argv in QUERY_FORMS:
        operations.names.clear()
        lines = runner.lines("ledger", "export", *argv)
        assert lines, argv
        assert "scan" not in operations.names and "query" in operations.names, argv
        assert "Scan" not in runner.err
    # the positive control: --all does scan, and says so
    operations.names.clear()
    every = runner.lines("ledger", "export", "--all")
    assert "scan" in operations.names
    assert runner.err.startswith("minutemeter: ledger export without --source or --account "
                                 "reads the whole table (a Scan)")
    by_source = [line for s in SOURCES for line in runner.lines("ledger", "export", "--source", s)]
    assert sorted(by_source, key=lambda e: e["ledger_id"]) == sorted(
        every, key=lambda e: e["ledger_id"])


def test_resume_on_the_command_line_with_the_printed_cursors(
    cli: tuple[InProcessCli, Operations], monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner, _ = cli
    monkeypatch.setattr(cli_statements, "CURSOR_EVERY", 1)  # a cursor after every entry
    for argv in (("--source", "s1", "--month", "2026-12"), ("--account", ACCOUNTS[2])):
        whole = runner.lines("ledger", "export", *argv)
        cursors = _cursors(runner.err)
        # one progress line per entry and the final one, which names the last entry again
        assert len(cursors) == len(whole) + 1 and cursors[-1] == cursors[-2]
        assert runner.err.splitlines()[-1].startswith(
            f"minutemeter: exported {len(whole)} ledger entries; resume with --after ")
        for cut, cursor in enumerate(cursors[:-1]):
            rest = runner.lines("ledger", "export", *argv, "--after", cursor)
            assert rest == whole[cut + 1:], (argv, cut)
        # resuming after the last entry: nothing, and the same cursor again
        assert runner.lines("ledger", "export", *argv, "--after", cursors[-1]) == []
        assert _cursors(runner.err) == [cursors[-1]]


def test_progress_lines_come_every_so_many_entries(
    cli: tuple[InProcessCli, Operations], monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner, _ = cli
    monkeypatch.setattr(cli_statements, "CURSOR_EVERY", 7)
    whole = runner.lines("ledger", "export", "--source", "s2")
    progress = [line for line in runner.err.splitlines() if " so far" in line]
    assert len(progress) == len(whole) // 7 > 0
    assert progress[0].startswith(
        "minutemeter: exporting, 7 ledger entries so far; resume with --after ")


def test_csv_has_a_header_and_the_json_lines_fields(cli: tuple[InProcessCli, Operations]) -> None:
    runner, _ = cli
    argv = ("ledger", "export", "--account", ACCOUNTS[0], "--month", "2026-12")
    lines = runner.lines(*argv)
    code, out = runner.run(*argv, "--format", "csv")
    assert code == 0
    reader = csv.reader(io.StringIO(out))
    header = next(reader)
    assert tuple(header) == cli_statements.EXPORT_COLUMNS
    rows = [dict(zip(header, row, strict=True)) for row in reader]
    assert len(rows) == len(lines) > 0
    for row, line in zip(rows, lines, strict=True):
        assert set(line) <= set(header)
        assert row == {c: "" if line.get(c) is None else str(line[c]) for c in header}
    assert _cursors(runner.err)  # the cursor still goes to stderr


@pytest.mark.parametrize("argv", [
    ("--source", "s1", "--after", "not a cursor"),
    ("--source", "s1", "--month", "2026-12", "--after", "eyJhIjoxfQ"),  # {"a":1}
    ("--all", "--after", encode_cursor(Position("2026-12", "s1", ACCOUNTS[0], "k"))),
    ("--all", "--source", "s1"),
    ("--month", "2026-12"),
    ("--source", "s1", "--month", "2026-12", "--since", "2026-12-01T00:00:00Z"),
    ("--source", "s1", "--month", "2026-13"),
    ("--account", "not-a-uuid"),
])
def test_bad_cursors_and_combinations_are_one_line_and_exit_2(
    cli: tuple[InProcessCli, Operations], argv: tuple[str, ...],
) -> None:
    runner, operations = cli
    operations.names.clear()
    runner.refused("ledger", "export", *argv)
    assert operations.names == []  # refused before reading anything


def _cursors(err: str) -> list[str]:
    return [line.rsplit("--after ", 1)[1] for line in err.splitlines() if "--after " in line]


def test_cursor_text_is_json_of_the_position() -> None:
    position = Position("2026-12", "s1", ACCOUNTS[0], "2026-12-01T00:00:00Z#node-a")
    cursor = encode_cursor(position)
    decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    assert decoded == ["2026-12", "s1", ACCOUNTS[0], "2026-12-01T00:00:00Z#node-a"]
