"""Source health (seed 002): a failure rate over a sliding window of recent runs.

Runs are counted in small time buckets (5 minutes). The window is 15 minutes; when it holds
fewer than ``min_runs`` runs (a quiet source, or one whose schedule is slow), it widens step by
step, 15 minutes at a time, up to 10x, before judging. Skipped runs (lease held, source paused)
are neither successes nor failures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

BUCKET = timedelta(minutes=5)
BASE_WINDOW = timedelta(minutes=15)
MAX_WIDENING = 10
KEEP_BUCKETS = int(BASE_WINDOW * MAX_WIDENING / BUCKET)
MIN_RUNS = 3
DEGRADED_RATE = 0.1
FAILING_RATE = 0.5

Buckets = Mapping[int, tuple[int, int]]  # bucket start (epoch minutes) -> (runs, failures)


class HealthStatus(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    FAILING = "failing"


@dataclass(frozen=True)
class Health:
    """The verdict with the numbers behind it."""

    status: HealthStatus
    runs: int
    failures: int
    failure_rate: float
    window_minutes: int
    recovered: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "status": self.status.value,
            "runs": self.runs,
            "failures": self.failures,
            "failure_rate": round(self.failure_rate, 4),
            "window_minutes": self.window_minutes,
            "recovered": self.recovered,
        }


def bucket_of(at: datetime) -> int:
    """The bucket containing ``at``, as its start in whole minutes since the epoch."""
    minutes = int(at.timestamp() // 60)
    size = int(BUCKET.total_seconds() // 60)
    return minutes - minutes % size


def record_run(buckets: Buckets, at: datetime, failed: bool) -> dict[int, tuple[int, int]]:
    """``buckets`` with one more run at ``at``; buckets older than the widest window dropped."""
    key = bucket_of(at)
    runs, failures = buckets.get(key, (0, 0))
    updated = {k: v for k, v in buckets.items() if k > key - KEEP_BUCKETS * _bucket_minutes()}
    updated[key] = (runs + 1, failures + int(failed))
    return updated


def assess(buckets: Buckets, now: datetime, previous: HealthStatus | None = None) -> Health:
    """Judge the runs of the window ending at ``now``, widened until it holds ``MIN_RUNS``.

    No run at all in the widest window is ``failing``: a source that stopped running is the
    failure seed 003 is about. ``recovered`` is set when ``previous`` was not healthy.
    """
    current = bucket_of(now)
    runs = failures = 0
    window = BASE_WINDOW
    for step in range(1, MAX_WIDENING + 1):
        window = BASE_WINDOW * step
        oldest = current - int(window / BUCKET) * _bucket_minutes()
        runs, failures = _count(buckets, oldest, current)
        if runs >= MIN_RUNS:
            break
    rate = failures / runs if runs else 1.0
    if rate >= FAILING_RATE:
        status = HealthStatus.FAILING
    elif rate >= DEGRADED_RATE:
        status = HealthStatus.DEGRADED
    else:
        status = HealthStatus.HEALTHY
    recovered = status is HealthStatus.HEALTHY and previous not in (None, HealthStatus.HEALTHY)
    return Health(status, runs, failures, rate, int(window.total_seconds() // 60), recovered)


def _count(buckets: Buckets, oldest: int, current: int) -> tuple[int, int]:
    runs = failures = 0
    for key, (bucket_runs, bucket_failures) in buckets.items():
        if oldest < key <= current:
            runs += bucket_runs
            failures += bucket_failures
    return runs, failures


def _bucket_minutes() -> int:
    return int(BUCKET.total_seconds() // 60)
