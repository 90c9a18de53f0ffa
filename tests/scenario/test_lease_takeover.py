"""GIVEN runner A paused in the middle of a run for longer than its lease,
WHEN runner B takes the lease over and advances the source, and A then wakes up,
THEN A's commit is rejected (LeaseLostError), nothing moves back, nothing is billed twice.

The pause is real for the HTTP request (A's first page is held by the exporter) and injected for
the clocks: B's wall clock is past A's lease; A's monotonic clock either shows the pause (A
notices by itself) or does not (a clock that lies: fencing alone must stop it).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from minutemeter.domain.model import JobResult, JobStatus, SourceConfig
from minutemeter.local.exporter import SampleExporter, SyntheticCounters, account_ids
from minutemeter.local.truth import expected_usage
from minutemeter.service.collect import collect_source
from tests.support.backends import Backend
from tests.support.clock import FakeClock
from tests.support.harness import deps_for, exported, ledger_usage, run_until_caught_up

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=40)
LEASE = 30


@pytest.mark.parametrize("a_notices_the_pause", [True, False])
def test_a_paused_runner_cannot_commit_after_a_takeover(
    concurrent_backend: Backend, a_notices_the_pause: bool
) -> None:
    backend = concurrent_backend
    counters = SyntheticCounters(account_ids(4), T0, end=NOW)
    first_page_held = threading.Event()
    wake_a = threading.Event()

    def hold_first_request(number: int, query: Mapping[str, str], doc: dict[str, Any]) -> None:
        if number == 0:
            first_page_held.set()
            wake_a.wait(timeout=30)
        return None

    with SampleExporter(counters, fault=hold_first_request) as exporter:
        backend.state.sources.put_source(SourceConfig("s1", exporter.url, T0 + timedelta(minutes=1),
                                                      max_window_seconds=900, lease_seconds=LEASE))
        clock_a = FakeClock(NOW)
        results: list[JobResult] = []
        runner_a = threading.Thread(
            target=lambda: results.append(
                collect_source(deps_for(backend, clock_a, heartbeat=False), "s1")
            )
        )
        runner_a.start()
        assert first_page_held.wait(timeout=30)
        # A is stuck on its first page. B's clock is past A's lease plus the margin.
        clock_b = FakeClock(NOW + timedelta(seconds=LEASE + 3))
        jobs_b = run_until_caught_up(deps_for(backend, clock_b), "s1")
        mark_b = backend.state.sync.get_state("s1").last_completed_until
        if a_notices_the_pause:
            clock_a.advance(LEASE + 3)  # A's monotonic clock saw the pause
        wake_a.set()
        runner_a.join(timeout=60)
    (job_a,) = results
    # THEN A failed with LeaseLost, and B's progress stands
    assert job_a.status is JobStatus.ERROR and job_a.error_type == "LeaseLostError"
    assert all(job.status is JobStatus.OK for job in jobs_b)
    state = backend.state.sync.get_state("s1")
    assert state.last_completed_until == mark_b
    assert state.last_job is not None and state.last_job["job_id"] == jobs_b[-1].job_id
    assert state.consecutive_failures == 0  # A's failure did not touch B's sync state
    assert any(j["job_id"] == job_a.job_id for j in backend.state.sync.list_jobs("s1", 20))
    assert mark_b is not None
    truth = expected_usage(counters.history(mark_b), start=T0 + timedelta(minutes=1), until=mark_b)
    assert ledger_usage(exported(backend, "s1")) == truth
    if a_notices_the_pause:
        assert job_a.written_minutes == 0  # it stopped before writing anything
        assert "renewal refused" in (job_a.error or "")
    else:
        # fencing stopped the commit (checkpoints or watermark, whichever came first)
        assert "not moved" in (job_a.error or "")
