"""GIVEN a collector that dies after its N-th write, for every N of a clean run,
WHEN a fresh collector runs afterwards,
THEN every account-minute is billed exactly once and quota equals min(usage, included).

The crash is a BaseException raised right after a write returns, so nothing after it runs (no
job record, no cleanup), as with a killed process. Runs on DynamoDB Local, commit concurrency 1
so that "after the N-th write" is one well-defined point, and no lease heartbeat (a killed
process has no threads left). A dead runner keeps its lease until it expires, so the runs after
a crash use a clock past the lease (``AFTER_LEASE``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from minutemeter.domain.model import BillingProfile, SourceConfig
from minutemeter.local.ddb import DynamoDBLocal
from minutemeter.local.exporter import SampleExporter, SyntheticCounters, account_ids
from minutemeter.local.truth import expected_usage
from minutemeter.service.collect import collect_source
from minutemeter.service.statements import audit_month
from tests.support.backends import Backend, dynamo_backend
from tests.support.clock import FakeClock
from tests.support.harness import (
    deps_for,
    exported,
    included_by_account_month,
    ledger_usage,
    run_until_caught_up,
    usage_by_account_month,
    watermark,
)

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
ACCOUNTS = account_ids(2, seed=3)
INCLUDED = 30_000_000  # runs out inside the window, so allocation order matters
WRITES = {"put_item", "update_item", "batch_write_item", "transact_write_items"}
AFTER_LEASE = timedelta(seconds=60 + 2 + 1)  # default lease + default margin + 1 s


class SimulatedCrash(BaseException):
    """Not an Exception: the service's error handling must not see it."""


@dataclass
class CrashingClient:
    """Forwards to a DynamoDB client; dies right after write number ``crash_after``."""

    client: Any
    crash_after: int | None = None
    writes: int = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.client, name)
        if name not in WRITES:
            return attribute

        def write(**kwargs: Any) -> Any:
            try:
                return attribute(**kwargs)
            finally:
                self.writes += 1
                if self.crash_after is not None and self.writes >= self.crash_after:
                    raise SimulatedCrash(f"killed after write {self.writes}")

        return write


def _setup(ddb_local: DynamoDBLocal, exporter_url: str) -> tuple[Backend, CrashingClient]:
    crashing = CrashingClient(ddb_local.client())
    backend = dynamo_backend("ddblocal", crashing)
    source = SourceConfig("s1", exporter_url, T0 + timedelta(minutes=1), max_window_seconds=1200)
    backend.state.sources.put_source(source)
    profile = BillingProfile(INCLUDED, Decimal("0.000000001"), Decimal("2"), "v1")
    for account in ACCOUNTS:
        backend.state.profiles.put_profile(account, profile)
    crashing.writes = 0
    return backend, crashing


def _check_exactly_once(backend: Backend, counters: SyntheticCounters) -> None:
    source = backend.state.sources.get_source("s1")
    mark = watermark(backend, source)
    truth = expected_usage(counters.history(mark), start=source.start, until=mark)
    entries = exported(backend, "s1")
    assert ledger_usage(entries) == truth
    included = included_by_account_month(entries)
    for key, total in usage_by_account_month(entries).items():
        assert included.get(key, 0) == min(total, INCLUDED)
        assert backend.ledger.get_quota(*key).used_bytes == min(total, INCLUDED)
    # AND each account-month's statement is the sum of its entries (issue 11)
    for month in sorted({month for _account, month in included}):
        audit = audit_month(backend.ledger, backend.state.sources, month)
        assert audit.differences == [] and audit.accounts_checked > 0


@pytest.mark.slow
def test_a_crash_after_any_write_loses_and_doubles_nothing(ddb_local: DynamoDBLocal) -> None:
    counters = SyntheticCounters(ACCOUNTS, T0, end=T0 + timedelta(minutes=30))
    now = T0 + timedelta(minutes=30)
    with SampleExporter(counters) as exporter:
        # A clean run first, to count its writes.
        backend, crashing = _setup(ddb_local, exporter.url)
        clean = deps_for(backend, FakeClock(now), heartbeat=False, commit_concurrency=1)
        run_until_caught_up(clean, "s1")
        total_writes = crashing.writes
        _check_exactly_once(backend, counters)
        assert total_writes > 20

        for crash_after in range(1, total_writes):
            backend, crashing = _setup(ddb_local, exporter.url)
            crashing.crash_after = crash_after
            deps = deps_for(backend, FakeClock(now), heartbeat=False, commit_concurrency=1)
            with pytest.raises(SimulatedCrash):
                run_until_caught_up(deps, "s1")
            crashing.crash_after = None
            run_until_caught_up(deps_for(backend, FakeClock(now + AFTER_LEASE)), "s1")
            _check_exactly_once(backend, counters)


@pytest.mark.slow
def test_crashes_in_a_row_then_a_clean_run(ddb_local: DynamoDBLocal) -> None:
    """Several runners die at different points, one after another, before a clean run."""
    counters = SyntheticCounters(ACCOUNTS, T0, end=T0 + timedelta(minutes=30))
    now = T0 + timedelta(minutes=30)
    with SampleExporter(counters) as exporter:
        backend, crashing = _setup(ddb_local, exporter.url)
        for attempt, crash_after in enumerate((3, 7, 2, 11, 5)):
            crashing.crash_after = crashing.writes + crash_after
            clock = FakeClock(now + attempt * AFTER_LEASE)
            deps = deps_for(backend, clock, heartbeat=False, commit_concurrency=1)
            with pytest.raises(SimulatedCrash):
                collect_source(deps, "s1")
        crashing.crash_after = None
        run_until_caught_up(deps_for(backend, FakeClock(now + 5 * AFTER_LEASE)), "s1")
        _check_exactly_once(backend, counters)
