"""The collect-and-rate service end to end: a real HTTP exporter on 127.0.0.1 and the real
DynamoDB adapters on moto and on DynamoDB Local (and the fakes, which must agree)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from minutemeter.domain.model import (
    BillingProfile,
    ClockGuardAction,
    ClockVerdict,
    JobResult,
    JobStatus,
    ResetPolicy,
    SourceConfig,
)
from minutemeter.local.exporter import SampleExporter, StaticHistory, SyntheticCounters, account_ids
from minutemeter.local.truth import expected_usage
from minutemeter.service.collect import collect_source
from tests.support.backends import Backend
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
ACCOUNTS = account_ids(6)


def _source(url: str, **overrides: object) -> SourceConfig:
    fields: dict[str, object] = dict(source_id="s1", url=url, start=T0 + timedelta(minutes=2),
                                     lag_seconds=60, max_window_seconds=1800)
    fields.update(overrides)
    return SourceConfig(**fields)  # type: ignore[arg-type]


def test_catch_up_bills_exactly_what_the_counters_say(any_backend: Backend) -> None:
    # GIVEN an exporter with 2 h of 15 s snapshots for 6 accounts, and a source starting at +2 min
    counters = SyntheticCounters(ACCOUNTS, T0, end=T0 + timedelta(hours=2))
    with SampleExporter(counters, page_size=17) as exporter:
        source = _source(exporter.url)
        any_backend.state.sources.put_source(source)
        deps = deps_for(any_backend, FakeClock(T0 + timedelta(hours=2)))
        # WHEN the collector runs until it has caught up (30 min windows)
        jobs = run_until_caught_up(deps, "s1")
    # THEN every account-minute matches the oracle, once
    mark = watermark(any_backend, source)
    assert mark == T0 + timedelta(hours=2) - timedelta(minutes=1)
    truth = expected_usage(counters.history(mark), start=source.start, until=mark)
    entries = exported(any_backend, "s1")
    assert ledger_usage(entries) == truth
    assert sum(j.written_minutes for j in jobs) == len(entries) == len(truth)
    assert all(j.status is JobStatus.OK for j in jobs)
    assert len(jobs) == 4  # 118 minutes in 30-minute windows


def test_second_run_over_the_same_data_writes_nothing(any_backend: Backend) -> None:
    counters = SyntheticCounters(ACCOUNTS[:3], T0, end=T0 + timedelta(minutes=40))
    with SampleExporter(counters) as exporter:
        source = _source(exporter.url)
        any_backend.state.sources.put_source(source)
        clock = FakeClock(T0 + timedelta(minutes=40))
        deps = deps_for(any_backend, clock)
        first = run_until_caught_up(deps, "s1")
        again = run_until_caught_up(deps, "s1")
    assert sum(j.written_minutes for j in first) > 0
    assert again[-1].written_minutes == again[-1].processed_samples == 0
    assert again[-1].window_since == again[-1].window_until  # nothing new to fetch, still recorded
    assert any_backend.state.sync.list_jobs("s1", 10)[0]["job_id"] == again[-1].job_id


def test_included_quota_is_used_once_across_runs_and_months(any_backend: Backend) -> None:
    # GIVEN a window across a month end and a 40 MB monthly included quota for one account
    start = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
    counters = SyntheticCounters(ACCOUNTS[:2], start, end=start + timedelta(hours=1))
    profile = BillingProfile(40_000_000, Decimal("0.000000003"), Decimal("0"), "promo-2")
    any_backend.state.profiles.put_profile(ACCOUNTS[0], profile)
    with SampleExporter(counters) as exporter:
        source = _source(exporter.url, start=start, max_window_seconds=900)
        any_backend.state.sources.put_source(source)
        run_until_caught_up(deps_for(any_backend, FakeClock(start + timedelta(hours=1))), "s1")
    entries = exported(any_backend, "s1")
    used = included_by_account_month(entries)
    usage = usage_by_account_month(entries)
    # THEN per account-month, included == min(usage, quota), and the quota item agrees
    for (account, month), total in usage.items():
        quota = profile.included_bytes if account == ACCOUNTS[0] else 0
        assert used.get((account, month), 0) == min(total, quota)
        assert any_backend.ledger.get_quota(account, month).used_bytes == min(total, quota)
    assert {m for _, m in usage} == {"2026-11", "2026-12"}
    for entry in entries:
        assert entry.billable_bytes == entry.usage.bytes - entry.included_bytes
        price = entry.profile.price_per_byte * entry.profile.effective_multiplier
        assert entry.amount == Decimal(entry.billable_bytes) * price
    promo = [e for e in entries if e.usage.account_id == ACCOUNTS[0]]
    assert {e.profile.pricing_rule_version for e in promo} == {"promo-2"}
    assert promo[0].profile.effective_multiplier == 1  # multiplier 0 falls back to 1


def _raw(at: datetime, *samples: dict[str, object]) -> tuple[datetime, dict[str, object]]:
    return at, {"taken_at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "samples": list(samples)}


def test_bad_samples_are_quarantined_and_the_rest_is_billed(any_backend: Backend) -> None:
    a, b = ACCOUNTS[:2]
    history = StaticHistory([
        _raw(T0 + timedelta(minutes=2, seconds=5), {"account_id": a, "total_bytes": 100},
             {"account_id": b, "total_bytes": 10}),
        _raw(T0 + timedelta(minutes=3, seconds=5), {"account_id": a, "total_bytes": 250},
             {"account_id": "not-a-uuid", "total_bytes": 5},
             {"account_id": b, "total_bytes": -3}),
        _raw(T0 + timedelta(minutes=4, seconds=5), {"account_id": a, "total_bytes": 1.5},
             {"account_id": b, "total_bytes": 40}),
    ])
    with SampleExporter(history) as exporter:
        any_backend.state.sources.put_source(_source(exporter.url))
        job = run_until_caught_up(deps_for(any_backend, FakeClock(T0 + timedelta(minutes=10))),
                                  "s1")[-1]
    assert job.status is JobStatus.PARTIAL
    assert job.quarantined_samples == 3
    records = any_backend.state.records.list_records("s1", "quarantine", 10)
    reasons = sorted(reason for r in records if isinstance(reason := r["reason"], str))
    assert len(reasons) == len(records), records  # every reason is a string
    assert reasons == ["account_id_invalid", "total_bytes_negative", "total_bytes_not_integer"]
    assert ledger_usage(exported(any_backend, "s1")) == {
        (a, "2026-11-22T10:03:00Z"): 150,
        (b, "2026-11-22T10:04:00Z"): 30,
    }


def test_protocol_error_fails_the_run_and_keeps_the_watermark(any_backend: Backend) -> None:
    counters = SyntheticCounters(ACCOUNTS[:2], T0, end=T0 + timedelta(hours=1))

    def empty_cursor(number: int, query: object, document: dict[str, object]) -> tuple[int, bytes]:
        return 200, json.dumps(dict(document, has_more=True, next_cursor="")).encode()

    with SampleExporter(counters, fault=empty_cursor) as exporter:
        any_backend.state.sources.put_source(_source(exporter.url))
        deps = deps_for(any_backend, FakeClock(T0 + timedelta(hours=1)))
        job = run_until_caught_up(deps, "s1")[-1]
        assert job.status is JobStatus.ERROR
        assert job.error_type == "SourceProtocolError" and "next_cursor" in (job.error or "")
        state = any_backend.state.sync.get_state("s1")
        assert state.last_completed_until is None and state.consecutive_failures == 1
        assert exported(any_backend, "s1") == []
        # WHEN the exporter is fixed, the same window is collected in full
        exporter.fault = None
        jobs = run_until_caught_up(deps, "s1")
    assert jobs[-1].status is JobStatus.OK
    assert any_backend.state.sync.get_state("s1").consecutive_failures == 0


def test_resets_are_recorded_and_follow_the_policy(any_backend: Backend) -> None:
    resets = {ACCOUNTS[0]: T0 + timedelta(minutes=7, seconds=40)}
    counters = SyntheticCounters(ACCOUNTS[:2], T0, end=T0 + timedelta(minutes=20), resets=resets)
    for policy, source_id in ((ResetPolicy.SKIP, "skip"), (ResetPolicy.FROM_ZERO, "zero")):
        with SampleExporter(counters) as exporter:
            source = _source(exporter.url, source_id=source_id, reset_policy=policy)
            any_backend.state.sources.put_source(source)
            jobs = run_until_caught_up(
                deps_for(any_backend, FakeClock(T0 + timedelta(minutes=20))), source_id)
        mark = watermark(any_backend, source)
        truth = expected_usage(counters.history(mark), start=source.start, until=mark,
                               reset_policy=policy.value)
        assert ledger_usage(exported(any_backend, source_id)) == truth
        assert sum(j.counter_resets for j in jobs) == 1
        (record,) = any_backend.state.records.list_records(source_id, "reset", 10)
        assert record["account_id"] == ACCOUNTS[0] and record["policy"] == policy.value


def test_overlapping_runners_bill_each_minute_once(concurrent_backend: Backend) -> None:
    any_backend = concurrent_backend
    # GIVEN one source and 4 runners started together (one clock: skew has its own tests)
    counters = SyntheticCounters(ACCOUNTS, T0, end=T0 + timedelta(hours=1))
    with SampleExporter(counters) as exporter:
        source = _source(exporter.url, max_window_seconds=900)
        any_backend.state.sources.put_source(source)
        errors: list[BaseException] = []
        jobs: list[JobResult] = []
        clock = FakeClock(T0 + timedelta(minutes=50))

        def runner() -> None:
            try:
                jobs.extend(
                    run_until_caught_up(deps_for(any_backend, clock, commit_concurrency=2), "s1")
                )
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=runner) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # WHEN a last runner finishes the job
        run_until_caught_up(deps_for(any_backend, clock), "s1")
    assert errors == []
    # THEN the lease let one runner work at a time and the others skip, not fail
    statuses = {job.status for job in jobs}
    assert JobStatus.SKIPPED in statuses and JobStatus.ERROR not in statuses
    mark = watermark(any_backend, source)
    truth = expected_usage(counters.history(mark), start=source.start, until=mark)
    entries = exported(any_backend, "s1")
    assert ledger_usage(entries) == truth  # ledger_usage also fails on a doubled bucket


def test_the_clock_guard_widens_the_lag_and_entries_record_the_bound(
    any_backend: Backend,
) -> None:
    # GIVEN a drift verdict of offset -1.2 s +- 0.5 s (error 1.7 s > the source's 1 s margin)
    counters = SyntheticCounters(ACCOUNTS[:2], T0, end=T0 + timedelta(minutes=30))
    now = T0 + timedelta(minutes=30, seconds=61)  # lag 60 s alone would allow 10:30
    any_backend.state.verdicts.put_clock_verdict(ClockVerdict(
        measured_at=now - timedelta(minutes=2), status="warning",
        offset_ms=Decimal("-1200"), bound_ms=Decimal("500"), valid_sources=3))
    with SampleExporter(counters) as exporter:
        any_backend.state.sources.put_source(_source(exporter.url))
        (job,) = run_until_caught_up(deps_for(any_backend, FakeClock(now)), "s1")
    # THEN the window stops a minute earlier: 10:30:01 - 60 s - 2 s < 10:30
    assert job.window_until == T0 + timedelta(minutes=29)
    assert job.clock_guard is not None
    assert job.clock_guard == {"action": "widen", "extra_lag_seconds": 2,
                               "clock_error_ms": "1700", "reason": job.clock_guard["reason"]}
    entries = exported(any_backend, "s1")
    assert entries and {e.clock_bound_ms for e in entries} == {Decimal(1700)}
    assert all(e.usage.last_taken_at < e.collected_at for e in entries)  # both clocks recorded


def test_the_clock_guard_pauses_a_source_that_asks_for_it(any_backend: Backend) -> None:
    any_backend.state.verdicts.put_clock_verdict(ClockVerdict(
        measured_at=T0, status="critical", offset_ms=Decimal("900"), bound_ms=Decimal("400"),
        valid_sources=2))
    any_backend.state.sources.put_source(_source("http://127.0.0.1:9",
                                                 clock_guard=ClockGuardAction.PAUSE))
    job = collect_source(deps_for(any_backend, FakeClock(T0 + timedelta(minutes=5))), "s1")
    assert job.status is JobStatus.SKIPPED
    assert job.clock_guard is not None and job.clock_guard["action"] == "pause"
    assert any_backend.state.sync.get_state("s1").last_completed_until is None
    assert any_backend.state.sync.get_lease("s1") is None  # paused before taking the lease


def test_health_is_kept_with_the_sync_state_and_recovery_is_reported(
    any_backend: Backend,
) -> None:
    counters = SyntheticCounters(ACCOUNTS[:2], T0, end=T0 + timedelta(hours=1))

    def broken(number: int, query: object, document: dict[str, object]) -> tuple[int, bytes]:
        return 503, b"maintenance"

    with SampleExporter(counters, fault=broken) as exporter:
        any_backend.state.sources.put_source(_source(exporter.url, max_window_seconds=120))
        clock = FakeClock(T0 + timedelta(minutes=10))
        deps = deps_for(any_backend, clock)
        for _ in range(3):  # three failed runs a minute apart
            assert collect_source(deps, "s1").status is JobStatus.ERROR
            clock.advance(60)
        failing = any_backend.state.sync.get_state("s1").health
        assert failing is not None and failing["status"] == "failing"
        assert (failing["runs"], failing["failures"]) == (3, 3)
        exporter.fault = None
        jobs = []
        for _ in range(30):  # the exporter is back: successful runs a minute apart
            jobs.append(collect_source(deps, "s1"))
            clock.advance(60)
    assert any(job.health and job.health["recovered"] for job in jobs)
    health = any_backend.state.sync.get_state("s1").health
    assert health is not None and health["status"] == "healthy"
    assert jobs[-1].lag_seconds is not None and 60 <= jobs[-1].lag_seconds < 180
