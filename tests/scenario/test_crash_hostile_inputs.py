"""The crash-after-every-write scenario (test_crash_between_writes.py) on hostile inputs:
GIVEN an exporter that lists an account twice in a snapshot (the wrong copy first) and a source
whose node is renamed half-way,
WHEN the collector dies after its N-th write of the run after the rename, for every N, and a
fresh collector runs afterwards,
THEN the ledger equals the spec's oracle: the duplicated account is unreadable in that snapshot,
the renamed node's counters start from a fresh baseline, and every account-minute is billed once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from minutemeter.domain.model import SourceConfig
from minutemeter.domain.timeutil import month_of
from minutemeter.local.ddb import DynamoDBLocal
from minutemeter.local.exporter import (
    SampleExporter,
    StaticHistory,
    SyntheticCounters,
    account_ids,
    rfc3339,
)
from minutemeter.local.truth import expected_usage
from minutemeter.service.statements import audit_month
from tests.scenario.test_crash_between_writes import AFTER_LEASE, CrashingClient, SimulatedCrash
from tests.support.backends import Backend, dynamo_backend
from tests.support.clock import FakeClock
from tests.support.harness import deps_for, exported, ledger_usage, run_until_caught_up

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
START = T0 + timedelta(minutes=1)
SWITCH = T0 + timedelta(minutes=10)
NOW = T0 + timedelta(minutes=20)
ACCOUNTS = account_ids(2, seed=13)
History = list[tuple[datetime, dict[str, int]]]


def _served(history: History) -> tuple[StaticHistory, History, datetime]:
    """node-a's counters before SWITCH, node-b's (far larger) after, and one snapshot after the
    switch that lists ACCOUNTS[0] twice with a wrong copy first."""
    other = [(at, {a: v + 5 * 10**12 for a, v in values.items()}) for at, values in history]
    doubled = next(at for at, _ in other if at >= SWITCH + timedelta(minutes=3))
    items = []
    for (at, mine), (_, theirs) in zip(history, other, strict=True):
        values = mine if at < SWITCH else theirs
        samples = [{"account_id": a, "total_bytes": v} for a, v in values.items()]
        if at == doubled:
            samples.insert(0, {"account_id": ACCOUNTS[0], "total_bytes": 9 * 10**15})
        items.append((at, {"taken_at": rfc3339(at), "samples": samples}))
    return StaticHistory(items), other, doubled


def _setup(ddb_local: DynamoDBLocal, url: str) -> tuple[Backend, CrashingClient]:
    crashing = CrashingClient(ddb_local.client())
    backend = dynamo_backend("ddblocal", crashing)
    backend.state.sources.put_source(SourceConfig("s1", url, START, node_id="node-a", lag_seconds=0,
                                                  max_window_seconds=600))
    return backend, crashing


def _before_the_rename(backend: Backend, exporter: SampleExporter) -> None:
    exporter.node_id = "node-a"
    run_until_caught_up(deps_for(backend, FakeClock(SWITCH), heartbeat=False), "s1")
    exporter.node_id = "node-b"
    sources = backend.state.sources
    sources.put_source(replace(sources.get_source("s1"), node_id="node-b"))


def _check(backend: Backend, history: History, other: History, doubled: datetime) -> None:
    readable = [(at, {a: v for a, v in values.items() if not (at == doubled and a == ACCOUNTS[0])})
                for at, values in other]
    truth: Counter[tuple[str, str]] = Counter(expected_usage(history, start=START, until=SWITCH))
    truth.update(expected_usage(readable, start=SWITCH, until=NOW))
    assert ledger_usage(exported(backend, "s1")) == {k: v for k, v in truth.items() if v}
    assert max(truth.values()) < 10**9
    audit = audit_month(backend.ledger, backend.state.sources, month_of(NOW))  # issue 11
    assert audit.differences == [] and audit.accounts_checked > 0


@pytest.mark.slow
def test_a_crash_after_any_write_on_hostile_inputs_loses_and_doubles_nothing(
    ddb_local: DynamoDBLocal,
) -> None:
    counters = SyntheticCounters(ACCOUNTS, T0, end=NOW)
    history = counters.history(NOW)
    served, other, doubled = _served(history)
    with SampleExporter(served) as exporter:
        backend, crashing = _setup(ddb_local, exporter.url)
        _before_the_rename(backend, exporter)
        crashing.writes = 0
        run_until_caught_up(deps_for(backend, FakeClock(NOW), heartbeat=False,
                                     commit_concurrency=1), "s1")
        total_writes = crashing.writes
        _check(backend, history, other, doubled)
        assert total_writes > 10

        for crash_after in range(1, total_writes):
            backend, crashing = _setup(ddb_local, exporter.url)
            _before_the_rename(backend, exporter)
            crashing.writes, crashing.crash_after = 0, crash_after
            deps = deps_for(backend, FakeClock(NOW), heartbeat=False, commit_concurrency=1)
            with pytest.raises(SimulatedCrash):
                run_until_caught_up(deps, "s1")
            crashing.crash_after = None
            run_until_caught_up(deps_for(backend, FakeClock(NOW + AFTER_LEASE)), "s1")
            _check(backend, history, other, doubled)
