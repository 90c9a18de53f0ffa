"""Statements and the audit (issue 11, first part): the statement moves with the reservation
that plans its entries, equals the sum of the ledger, and is listed without a table scan. The
service runs on the fakes, moto and DynamoDB Local; the CLI on moto."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import boto3
import pytest
from moto import mock_aws

from minutemeter.adapters.dynamo.ledger import quota_key
from minutemeter.adapters.dynamo.schema import create_tables
from minutemeter.bootstrap import bootstrap
from minutemeter.domain.model import BillingProfile, SourceConfig
from minutemeter.domain.statement import statement_of
from minutemeter.local.exporter import SampleExporter, SyntheticCounters, account_ids
from minutemeter.service.statements import account_statement, audit_month, month_statements
from minutemeter.settings import Settings
from tests.support.backends import Backend
from tests.support.cli import InProcessCli
from tests.support.clock import FakeClock
from tests.support.harness import deps_for, exported, run_until_caught_up

T0 = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)  # the run crosses into December
NOW = T0 + timedelta(hours=2)
ACCOUNTS = account_ids(4)
PROFILE = BillingProfile(50_000, Decimal("0.000000001"), Decimal("1.25"), "v2")


def _bill(backend: Backend) -> None:
    counters = SyntheticCounters(ACCOUNTS, T0, end=NOW)
    for account in ACCOUNTS[:2]:
        backend.state.profiles.put_profile(account, PROFILE)
    with SampleExporter(counters, page_size=13) as exporter:
        backend.state.sources.put_source(SourceConfig("s1", exporter.url, T0 + timedelta(
            minutes=1), lag_seconds=60, max_window_seconds=1800))
        run_until_caught_up(deps_for(backend, FakeClock(NOW)), "s1")


def test_each_statement_is_the_sum_of_its_entries_in_both_months(any_backend: Backend) -> None:
    # GIVEN two hours billed across a month boundary, two accounts with a priced profile
    _bill(any_backend)
    entries = exported(any_backend, "s1")
    for month in ("2026-11", "2026-12"):
        # WHEN the month's statements are listed
        listed = list(month_statements(any_backend.ledger, any_backend.state.sources, month))
        # THEN there is one per account, each the sum of that account-month's entries
        assert [s.account_id for s in listed] == sorted(ACCOUNTS)
        for statement in listed:
            mine = [e for e in entries
                    if e.usage.account_id == statement.account_id and e.quota_month == month]
            assert statement == statement_of(statement.account_id, month, mine)
            assert statement.totals.entries == len(mine) > 0
        priced = [s for s in listed if s.account_id in ACCOUNTS[:2]]
        assert all(s.totals.amount > 0 and set(s.by_pricing) == {"v2"} for s in priced)
        # AND the audit agrees
        audit = audit_month(any_backend.ledger, any_backend.state.sources, month)
        assert (audit.accounts_checked, audit.differences) == (4, [])


def test_an_account_without_usage_has_a_zero_statement(any_backend: Backend) -> None:
    statement = account_statement(any_backend.ledger, any_backend.state.sources,
                                  ACCOUNTS[0], "2026-10")
    assert statement.to_json() == {
        "account_id": ACCOUNTS[0], "month": "2026-10", "bytes": 0, "included_bytes": 0,
        "billable_bytes": 0, "amount": "0", "entries": 0, "corrections": 0, "by_pricing": {},
    }


# -- the CLI ----------------------------------------------------------------------------------
@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[InProcessCli]:
    with mock_aws():
        settings = Settings(ledger_table="st-ledger", state_table="st-state",
                            commit_concurrency=1, http_retries=0)
        app = bootstrap(settings, clock=FakeClock(NOW),
                        session=boto3.session.Session(region_name="us-east-1"))
        create_tables(app.dynamodb, ledger_table=settings.ledger_table,
                      state_table=settings.state_table)
        yield InProcessCli(app, capsys)


def _backend(cli: InProcessCli) -> Backend:
    return Backend("moto", cli.app.ledger, cli.app.state, cli.app.settings)


def test_usage_statements_and_audit_on_the_command_line(cli: InProcessCli) -> None:
    _bill(_backend(cli))
    one = cli.json("usage", ACCOUNTS[0], "--month", "2026-12")
    assert one["account_id"] == ACCOUNTS[0] and one["entries"] > 0
    assert Decimal(one["amount"]) > 0 and one["by_pricing"]["v2"]["amount"] == one["amount"]
    assert cli.json("usage", ACCOUNTS[0])["month"] == "2026-12"  # the clock's month
    lines = cli.lines("statements", "--month", "2026-12")
    assert [line["account_id"] for line in lines] == sorted(ACCOUNTS)
    assert lines[sorted(ACCOUNTS).index(ACCOUNTS[0])] == one
    code, out = cli.run("statements", "--month", "2026-12", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [r["account_id"] for r in rows] == sorted(ACCOUNTS)
    assert {r["amount"] for r in rows if r["account_id"] == ACCOUNTS[0]} == {one["amount"]}
    report = cli.json("audit", "--month", "2026-12")
    assert (report["status"], report["accounts_checked"]) == ("ok", 4)
    assert cli.json("audit", "--month", "2026-12", "--source", "s1")["accounts_checked"] == 4


def test_audit_finds_a_statement_that_does_not_add_up(cli: InProcessCli) -> None:
    # GIVEN a billed month, and one account's statement changed behind the ledger's back
    _bill(_backend(cli))
    table = cli.app.settings.ledger_table
    cli.app.dynamodb.update_item(
        TableName=table, Key={k: {"S": v} for k, v in quota_key(ACCOUNTS[1], "2026-12").items()},
        UpdateExpression="SET #s.#p.#v.#b = #s.#p.#v.#b + :one",
        ExpressionAttributeNames={"#s": "statement", "#p": "by_pricing", "#v": "v2",
                                  "#b": "bytes"},
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
    # WHEN the month is audited, THEN it exits 7 naming that account only
    report = cli.json("audit", "--month", "2026-12", code=7)
    assert [d["account_id"] for d in report["differences"]] == [ACCOUNTS[1]]
    assert report["differences"][0]["problems"] == ["statement differs from the sum of the ledger"]


@pytest.mark.parametrize("argv", [
    ("usage", "not-a-uuid"),
    ("usage", ACCOUNTS[0], "--month", "2026-13"),
    ("statements", "--month", "26-11"),
    ("audit", "--month", "1999-12"),
])
def test_bad_values_are_one_line_and_exit_2(cli: InProcessCli, argv: tuple[str, ...]) -> None:
    cli.refused(*argv)


@pytest.mark.parametrize(("argv", "named"), [
    (("statements",), "--month"),
    (("statements", "--month", "2026-11", "--format", "xml"), "--format"),
    (("audit",), "--month"),
])
def test_missing_or_unknown_options_exit_2(
    cli: InProcessCli, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], named: str
) -> None:
    with pytest.raises(SystemExit) as caught:  # argparse refuses them, like every bad option
        cli.run(*argv)
    err = capsys.readouterr().err
    assert caught.value.code == 2 and err.count("\n") == 1 and named in err


def test_auditing_an_unknown_source_is_an_error(cli: InProcessCli) -> None:
    code, out = cli.run("audit", "--month", "2026-12", "--source", "nope")
    assert (code, out) == (1, "") and "nope" in cli.err
