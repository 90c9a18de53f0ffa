"""Source health over a sliding, widening window of runs (domain/health.py), at its edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from minutemeter.domain.health import (
    HealthStatus,
    assess,
    bucket_of,
    record_run,
)

NOW = datetime(2026, 11, 22, 10, 0, 30, tzinfo=UTC)


def history(*runs: tuple[float, bool]) -> dict[int, tuple[int, int]]:
    """(minutes before NOW, failed) for each run."""
    buckets: dict[int, tuple[int, int]] = {}
    for minutes_ago, failed in runs:
        buckets = record_run(buckets, NOW - timedelta(minutes=minutes_ago), failed)
    return buckets


def test_no_runs_at_all_is_failing_after_widening_to_the_limit() -> None:
    health = assess({}, NOW)
    assert (health.status, health.runs, health.window_minutes) == (HealthStatus.FAILING, 0, 150)


def test_one_failed_run_of_one_is_failing_in_the_widest_window() -> None:
    health = assess(history((1, True)), NOW)
    assert health.status is HealthStatus.FAILING
    assert (health.runs, health.failures, health.failure_rate, health.window_minutes) == (
        1, 1, 1.0, 150)


def test_a_busy_source_is_judged_on_the_base_window() -> None:
    # one run a minute; the window is three 5-minute buckets, the current one partly elapsed
    runs = [(m, False) for m in range(14)]
    health = assess(history(*runs), NOW)
    assert health.window_minutes == 15 and health.status is HealthStatus.HEALTHY
    assert health.runs == 11  # 10:00:30 back to 9:50:30; 9:46:30-9:49:30 are in the 9:45 bucket


def test_a_quiet_source_widens_step_by_step_until_it_has_enough_runs() -> None:
    # three runs, 20, 35 and 50 minutes ago: a 15 min window holds none, 60 min holds all
    health = assess(history((20, False), (35, True), (50, False)), NOW)
    assert health.window_minutes == 60
    assert (health.runs, health.failures) == (3, 1)
    assert health.status is HealthStatus.DEGRADED  # 1/3 >= 10 %, < 50 %


def test_a_burst_of_failures_in_the_window_is_failing_and_older_ones_are_forgotten() -> None:
    old_failures = [(m, True) for m in range(100, 140, 2)]
    recent = [(m, m < 6) for m in range(10)]  # 6 failures of 10 just now
    health = assess(history(*old_failures, *recent), NOW)
    assert health.window_minutes == 15 and (health.runs, health.failures) == (10, 6)
    assert health.status is HealthStatus.FAILING


def test_the_rate_thresholds_are_inclusive() -> None:
    ten_percent = [(m, m == 0) for m in range(10)]  # 1 of 10
    assert assess(history(*ten_percent), NOW).status is HealthStatus.DEGRADED
    half = [(m, m % 2 == 0) for m in range(10)]  # 5 of 10
    assert assess(history(*half), NOW).status is HealthStatus.FAILING
    healthy = [(m / 2, m == 0) for m in range(11)]  # 1 of 11 < 10 %
    assert assess(history(*healthy), NOW).status is HealthStatus.HEALTHY


def test_recovery_is_reported_once_the_window_is_healthy_again() -> None:
    runs = [(m, False) for m in range(14)]
    recovered = assess(history(*runs), NOW, previous=HealthStatus.FAILING)
    assert recovered.recovered and recovered.to_json()["recovered"] is True
    steady = assess(history(*runs), NOW, previous=HealthStatus.HEALTHY)
    assert not steady.recovered


def test_buckets_older_than_the_widest_window_are_dropped() -> None:
    buckets = history((200, True), (1, False))
    assert sorted(buckets) == [bucket_of(NOW - timedelta(minutes=1))]
