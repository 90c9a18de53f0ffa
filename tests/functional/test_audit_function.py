"""The daily audit Lambda (functions/audit/app.py, issue 11) on moto: it audits the month so far
and the month just closed, and publishes ``AuditDifferences`` (0 when every account agrees, the
number of differing account-months otherwise) in one EMF document, with the event from events/."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from minutemeter.adapters.dynamo.ledger import quota_key
from minutemeter.adapters.dynamo.schema import create_tables
from minutemeter.bootstrap import App, bootstrap
from minutemeter.domain.model import BillingProfile, QuotaState, SourceConfig
from minutemeter.local.exporter import SampleExporter, SyntheticCounters, account_ids
from minutemeter.observability import AUDIT_METRICS
from minutemeter.service.audit import audit_recent_months, previous_month
from minutemeter.settings import Settings
from tests.functional.test_handler import FakeLambdaContext, _emf_documents
from tests.support.backends import Backend
from tests.support.clock import FakeClock
from tests.support.fakes import FakeLedgerStore, fake_state_stores
from tests.support.harness import deps_for, run_until_caught_up

REPO = Path(__file__).resolve().parents[2]
HANDLER_PATH = REPO / "functions" / "audit" / "app.py"
EVENT_PATH = REPO / "events" / "audit-scheduled.json"
T0 = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
NOW = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)  # the audit's day: November has just closed
ACCOUNTS = account_ids(3)
PROFILE = BillingProfile(40_000, Decimal("0.000000002"), Decimal("1"), "v1")


@pytest.fixture(scope="module")
def handler() -> ModuleType:
    """functions/audit/app.py, imported by path, with the Powertools environment of the
    template."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POWERTOOLS_SERVICE_NAME", "minutemeter")
        patch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Minutemeter")
        spec = importlib.util.spec_from_file_location("audit_app", HANDLER_PATH)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


def _bill(backend: Backend) -> None:
    counters = SyntheticCounters(ACCOUNTS, T0, end=NOW)
    backend.state.profiles.put_profile(ACCOUNTS[0], PROFILE)
    with SampleExporter(counters, page_size=19) as exporter:
        backend.state.sources.put_source(SourceConfig("s1", exporter.url, T0 + timedelta(
            minutes=1), lag_seconds=60, max_window_seconds=1800))
        run_until_caught_up(deps_for(backend, FakeClock(NOW)), "s1")


@pytest.fixture
def app(handler: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    """A billed ledger on moto across the month boundary, injected as the handler's warm App
    (its clock at NOW)."""
    with mock_aws():
        settings = Settings(ledger_table="audit-ledger", state_table="audit-state",
                            commit_concurrency=1, http_retries=0)
        wired = bootstrap(settings, clock=FakeClock(NOW),
                          session=boto3.session.Session(region_name="us-east-1"))
        create_tables(wired.dynamodb, ledger_table=settings.ledger_table,
                      state_table=settings.state_table)
        _bill(Backend("moto", wired.ledger, wired.state, wired.settings))
        monkeypatch.setattr(handler, "_app", wired)
        yield wired


def _run(handler: ModuleType, capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any],
                                                                         dict[str, Any]]:
    capsys.readouterr()
    event = json.loads(EVENT_PATH.read_text())
    result = handler.lambda_handler(event, FakeLambdaContext(function_name="minutemeter-audit"))
    (document,) = _emf_documents(capsys.readouterr().out)
    return result, document


def test_agreement_publishes_zero_differences(
    handler: ModuleType, app: App, capsys: pytest.CaptureFixture[str],
) -> None:
    # WHEN the daily audit runs on a ledger that adds up
    result, document = _run(handler, capsys)
    # THEN it checked both months, every account, and publishes 0 differences
    assert [m["month"] for m in result["months"]] == ["2026-11", "2026-12"]
    assert (result["status"], result["difference_count"]) == ("ok", 0)
    assert result["accounts_checked"] == 2 * len(ACCOUNTS)
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "Minutemeter"
    assert directive["Dimensions"] == [["service"]] and document["service"] == "minutemeter"
    assert {m["Name"]: m["Unit"] for m in directive["Metrics"]} == AUDIT_METRICS
    assert document["AuditDifferences"] == 0
    assert document["AuditAccountsChecked"] == 2 * len(ACCOUNTS)
    assert document["AuditHeartbeat"] == 1


def test_a_seeded_difference_publishes_more_than_zero(
    handler: ModuleType, app: App, capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN one account's November quota used changed behind the ledger's back
    app.dynamodb.update_item(
        TableName=app.settings.ledger_table,
        Key={k: {"S": v} for k, v in quota_key(ACCOUNTS[2], "2026-11").items()},
        UpdateExpression="SET used_bytes = used_bytes + :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
    # WHEN the daily audit runs
    result, document = _run(handler, capsys)
    # THEN the metric counts that account-month, and the report names it
    assert document["AuditDifferences"] == 1 > 0
    assert result["status"] == "differences"
    november, december = result["months"]
    assert [d["account_id"] for d in november["differences"]] == [ACCOUNTS[2]]
    assert november["differences"][0]["problems"] == [
        "quota used differs from the included bytes of the ledger"]
    assert december["differences"] == []


class _MovingLedger(FakeLedgerStore):
    """Answers one account's quota item with one more byte used on its first read only: what
    the audit sees when a reservation lands between its reads of the quota and the entries."""

    def __init__(self, account_id: str) -> None:
        super().__init__()
        self.account_id, self.reads, self.armed = account_id, 0, False

    def get_quota(self, account_id: str, month: str, *, consistent: bool = True) -> QuotaState:
        quota = super().get_quota(account_id, month, consistent=consistent)
        if self.armed and account_id == self.account_id and month == "2026-12":
            self.reads += 1
            if self.reads == 1:
                return replace(quota, used_bytes=quota.used_bytes + 1)
        return quota


def test_a_difference_only_one_read_saw_is_not_counted() -> None:
    backend = Backend("fake", _MovingLedger(ACCOUNTS[1]), fake_state_stores(), Settings())
    _bill(backend)
    assert isinstance(backend.ledger, _MovingLedger)
    backend.ledger.armed = True  # after the billing, which reads the quota items too
    report = audit_recent_months(backend.ledger, backend.state.sources, NOW)
    assert backend.ledger.reads == 2  # the first audit saw a difference: audited again
    assert (report.differences, report.accounts_checked) == (0, 2 * len(ACCOUNTS))


@pytest.mark.parametrize(("month", "before"), [("2026-12", "2026-11"), ("2027-01", "2026-12"),
                                               ("2000-01", "1999-12")])
def test_previous_month(month: str, before: str) -> None:
    assert previous_month(month) == before
