"""Reconcile against the real adapters: the scenario of issue 5.

GIVEN a window billed from the exporter, WHEN the exporter's history changes (a corrected
counter, a late sample), THEN a dry run shows exactly the changed minutes and writes nothing, a
confirm writes corrections, a second confirm writes nothing, and the ledger equals the new
truth, with quota moved exactly once.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from minutemeter.domain.errors import InputError
from minutemeter.domain.model import BillingProfile, LedgerEntry, SourceConfig
from minutemeter.domain.timeutil import format_second
from minutemeter.local.exporter import (
    SampleExporter,
    StaticHistory,
    SyntheticCounters,
    account_ids,
    rfc3339,
)
from minutemeter.local.truth import expected_usage
from minutemeter.service.reconcile import ReconcileRequest, reconcile
from minutemeter.service.reconcile_chunk import NoEvidenceError
from tests.support.backends import Backend
from tests.support.clock import FakeClock
from tests.support.harness import deps_for, exported, run_until_caught_up

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
START = T0 + timedelta(minutes=1)
NOW = T0 + timedelta(minutes=50)
ACCOUNTS = account_ids(3, seed=5)
INCLUDED = 40_000_000


def _totals(entries: list[LedgerEntry]) -> dict[tuple[str, str], int]:
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for entry in entries:
        totals[(entry.usage.account_id, format_second(entry.usage.minute))] += entry.usage.bytes
    return {k: v for k, v in totals.items() if v}


def _static(history: list[tuple[datetime, dict[str, int]]]) -> StaticHistory:
    return StaticHistory([
        (at, {"taken_at": rfc3339(at),
              "samples": [{"account_id": a, "total_bytes": v} for a, v in values.items()]})
        for at, values in history
    ])


History = list[tuple[datetime, dict[str, int]]]


LATE = "00000000-0000-4000-8000-00000000beef"


def _changed(history: History) -> History:
    """A counter corrected upwards from 10:20 on (one account), and a late account that shows
    up in the snapshots of 10:30-10:31 only."""
    late = LATE
    changed = []
    for at, values in history:
        values = dict(values)
        if at >= T0 + timedelta(minutes=20):
            values[ACCOUNTS[0]] += 7_000
        if T0 + timedelta(minutes=30) <= at < T0 + timedelta(minutes=32):
            values[late] = 1_000_000 + int((at - T0).total_seconds())
        changed.append((at, values))
    return changed


def _request(dry_run: bool, since: datetime = T0 + timedelta(minutes=10),
             until: datetime = T0 + timedelta(minutes=40)) -> ReconcileRequest:
    return ReconcileRequest("s1", since, until, dry_run, requested_by="arn:aws:iam::1:user/ops")


def test_dry_run_then_confirm_corrects_exactly_the_changed_minutes(any_backend: Backend) -> None:
    counters = SyntheticCounters(ACCOUNTS, T0, end=T0 + timedelta(minutes=45))
    any_backend.state.profiles.put_profile(ACCOUNTS[0], BillingProfile(
        INCLUDED, Decimal("0.000000002"), Decimal("1"), "v1"))
    with SampleExporter(counters) as exporter:
        any_backend.state.sources.put_source(SourceConfig("s1", exporter.url, START,
                                                          max_window_seconds=3600))
        deps = deps_for(any_backend, FakeClock(NOW))
        run_until_caught_up(deps, "s1")
        before = exported(any_backend, "s1")
        # WHEN the exporter's history changes
        new_history = _changed(counters.history(NOW))
        exporter.history = _static(new_history)
        dry = reconcile(deps, _request(dry_run=True))
        after_dry = exported(any_backend, "s1")
        confirmed = reconcile(deps, _request(dry_run=False))
        again = reconcile(deps, _request(dry_run=False))
        final = reconcile(deps, _request(dry_run=True))
    mark = any_backend.state.sync.get_state("s1").last_completed_until
    assert mark is not None
    new_truth = expected_usage(new_history, start=START, until=mark)
    old_totals = _totals(before)
    in_window = {k for k in set(new_truth) | set(old_totals)
                 if "2026-11-22T10:10" <= k[1] < "2026-11-22T10:40"}
    changed = {k for k in in_window if new_truth.get(k, 0) != old_totals.get(k, 0)}
    # THEN the dry run shows exactly those minutes and writes nothing
    assert dry.status == "differences"
    assert {(d.account_id, format_second(d.minute)) for d in dry.differences} == changed
    assert {d.reason for d in dry.differences} == {"different", "missing"}
    assert after_dry == before
    # the confirm writes one correction per difference; a second confirm writes nothing
    assert confirmed.status == "corrected"
    assert confirmed.corrections_written == len(changed)
    assert again.status == "ok" and again.corrections_written == 0 and again.differences == []
    assert final.status == "ok"
    # and the ledger equals the new truth inside the window, the old one outside
    totals = _totals(exported(any_backend, "s1"))
    for key in set(totals) | set(new_truth) | set(old_totals):
        expected = new_truth.get(key, 0) if key in in_window else old_totals.get(key, 0)
        assert totals.get(key, 0) == expected, key
    _check_corrections(exported(any_backend, "s1"), confirmed.reconcile_id)
    _check_quota(any_backend, exported(any_backend, "s1"))
    audit = any_backend.state.reconciles.list_reconciles("s1", 10)
    assert [r["dry_run"] for r in audit] == [True, False, False, True]
    assert {r["requested_by"] for r in audit} == {"arn:aws:iam::1:user/ops"}


def _check_corrections(entries: list[LedgerEntry], reconcile_id: str) -> None:
    usage_ids = {(e.usage.account_id, e.usage.minute): e.ledger_id
                 for e in entries if e.kind == "usage"}
    corrections = [e for e in entries if e.kind == "correction"]
    assert corrections
    for entry in corrections:
        spec = entry.correction
        assert spec is not None and spec.reconcile_id == reconcile_id
        assert spec.reason in {"different", "missing"}
        assert spec.corrects == usage_ids.get((entry.usage.account_id, entry.usage.minute))
        assert entry.amount == Decimal(entry.billable_bytes) * entry.profile.price_per_byte


def _check_quota(backend: Backend, entries: list[LedgerEntry]) -> None:
    """The quota item moved exactly with the entries (usage and corrections)."""
    included: dict[tuple[str, str], int] = defaultdict(int)
    for entry in entries:
        included[(entry.usage.account_id, entry.quota_month)] += entry.included_bytes
    for (account, month), total in included.items():
        assert backend.ledger.get_quota(account, month).used_bytes == total
        assert 0 <= total <= (INCLUDED if account == ACCOUNTS[0] else 0)


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        (T0 + timedelta(minutes=10, seconds=30), T0 + timedelta(minutes=20), "whole minutes"),
        (T0 + timedelta(minutes=20), T0 + timedelta(minutes=20), "before until"),
        (T0 + timedelta(minutes=20), T0 + timedelta(days=32), "at most 31 days"),
        (T0, T0 + timedelta(minutes=20), "start"),
        (T0 + timedelta(minutes=20), T0 + timedelta(hours=2), "beyond what the collector"),
    ],
)
def test_windows_that_cannot_be_reconciled_are_refused(
    any_backend: Backend, since: datetime, until: datetime, message: str
) -> None:
    any_backend.state.sources.put_source(SourceConfig("s1", "http://127.0.0.1:9", START))
    any_backend.state.sync.commit_progress("s1", until=T0 + timedelta(minutes=45), node_id="node-a",
                                           baseline_taken_at=START, at=T0, fence=None)
    with pytest.raises(InputError, match=message):
        reconcile(deps_for(any_backend, FakeClock(NOW)), _request(True, since, until))


def test_progress_is_reported_per_chunk(any_backend: Backend) -> None:
    counters = SyntheticCounters(ACCOUNTS[:1], T0, end=T0 + timedelta(hours=3))
    calls: list[Any] = []
    with SampleExporter(counters) as exporter:
        any_backend.state.sources.put_source(SourceConfig("s1", exporter.url, START,
                                                          max_window_seconds=7 * 3600))
        deps = deps_for(any_backend, FakeClock(T0 + timedelta(hours=3)))
        run_until_caught_up(deps, "s1")
        result = reconcile(deps, _request(True, T0 + timedelta(minutes=2), T0 + timedelta(hours=2,
                                                                                      minutes=30)),
                           progress=lambda done, total: calls.append((done, total)))
    assert result.status == "ok" and result.differences == []
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_a_window_confirmed_before_is_compared_again_when_history_changes_again(
    any_backend: Backend,
) -> None:
    counters = SyntheticCounters(ACCOUNTS[:2], T0, end=T0 + timedelta(minutes=45))
    with SampleExporter(counters) as exporter:
        any_backend.state.sources.put_source(SourceConfig("s1", exporter.url, START,
                                                          max_window_seconds=3600))
        deps = deps_for(any_backend, FakeClock(NOW))
        run_until_caught_up(deps, "s1")
        history = counters.history(NOW)
        first = _changed(history)
        exporter.history = _static(first)
        assert reconcile(deps, _request(dry_run=False)).corrections_written > 0
        # WHEN the exporter goes back to the original counters (the late account still listed,
        # at zero: it used nothing), and the window is confirmed again
        back = _idle_from(history, LATE, T0 + timedelta(minutes=30))
        exporter.history = _static(back)
        again = reconcile(deps, _request(dry_run=False))
        final = reconcile(deps, _request(dry_run=True))
    # THEN the finished confirm did not make the window a no-op: it corrected back
    assert again.status == "corrected" and again.corrections_written > 0
    assert final.status == "ok"
    mark = any_backend.state.sync.get_state("s1").last_completed_until
    assert mark is not None
    truth = expected_usage(history, start=START, until=mark)
    assert truth == expected_usage(back, start=START, until=mark)
    assert _totals(exported(any_backend, "s1")) == truth


def _idle_from(history: History, account: str, since: datetime) -> History:
    """``history`` with ``account`` listed at zero in every snapshot from ``since`` on."""
    return [(at, {**values, account: 0} if at >= since else values) for at, values in history]


@pytest.mark.parametrize("lost", ["everything", "one account"])
def test_usage_the_exporter_no_longer_has_is_never_taken_back(
    any_backend: Backend, lost: str
) -> None:
    # shared/spec/exporter-api.md: a window with no snapshots carries no information; an
    # account with no sample at or after a billed minute is no evidence that it used less
    counters = SyntheticCounters(ACCOUNTS, T0, end=T0 + timedelta(minutes=45))
    with SampleExporter(counters) as exporter:
        any_backend.state.sources.put_source(SourceConfig("s1", exporter.url, START,
                                                          max_window_seconds=3600))
        deps = deps_for(any_backend, FakeClock(NOW))
        run_until_caught_up(deps, "s1")
        before = exported(any_backend, "s1")
        history = counters.history(NOW)
        # WHEN the exporter lost its history (all of it, or one account's)
        if lost == "everything":
            exporter.history = _static([])
        else:
            exporter.history = _static([(at, {a: v for a, v in values.items()
                                              if a != ACCOUNTS[1]}) for at, values in history])
        dry = reconcile(deps, _request(dry_run=True))
        with pytest.raises(NoEvidenceError, match="no data is not zero usage"):
            reconcile(deps, _request(dry_run=False))
    # THEN the dry run names the minutes it cannot verify, and the confirm wrote nothing
    assert dry.status == "differences"
    no_data = [d for d in dry.differences if d.reason == "no_data"]
    assert no_data and all(d.exporter_bytes == 0 < d.ledger_bytes for d in no_data)
    if lost == "one account":
        assert {d.account_id for d in dry.differences} == {ACCOUNTS[1]}
    assert exported(any_backend, "s1") == before
    refused = any_backend.state.reconciles.list_reconciles("s1", 1)[0]
    assert refused["status"] == "refused" and refused["error_type"] == "NoEvidenceError"


def test_an_idle_account_the_exporter_stopped_listing_for_a_while_is_not_billed_on_return(
    any_backend: Backend,
) -> None:
    # GIVEN an idle account (its counter never moves, so it has no ledger entry) that the
    # exporter leaves out of its snapshots from 10:10 to 10:35, longer than reconcile's lookback
    idle, busy = account_ids(2, seed=21)
    items = []
    for k in range(4 * 50):
        at = T0 + timedelta(seconds=15 * k)
        values = {busy: 1000 * k}
        if not T0 + timedelta(minutes=10) <= at < T0 + timedelta(minutes=35):
            values[idle] = 5_000_000
        items.append((at, values))
    with SampleExporter(_static(items)) as exporter:
        any_backend.state.sources.put_source(SourceConfig("s1", exporter.url, T0, lag_seconds=0))
        deps = deps_for(any_backend, FakeClock(T0 + timedelta(minutes=50)))
        run_until_caught_up(deps, "s1")
        before = exported(any_backend, "s1")
        # WHEN a window with its return is reconciled
        request = ReconcileRequest("s1", T0 + timedelta(minutes=30), T0 + timedelta(minutes=45),
                                   False, "test")
        confirmed = reconcile(deps, request)
    # THEN its return is not usage since zero (it was seen before): nothing differs, nothing
    # is written, as the collector billed nothing for it
    assert confirmed.status == "ok" and confirmed.differences == []
    assert exported(any_backend, "s1") == before
    assert all(entry.usage.account_id == busy for entry in before)
