"""GIVEN a run holding a source's lease with a heartbeat,
WHEN its budget is spent while it is still running (stuck),
THEN the heartbeat stops renewing, the lease runs out, another runner takes it over and the
stuck run's fenced writes are rejected.

The heartbeat is a real thread on real time (one beat a second for a 3 s lease); the lease's
wall time comes from a fake clock that the test moves, so a renewal shows as a new ``until``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from minutemeter.domain.errors import LeaseLostError
from minutemeter.domain.lease import heartbeat_interval
from minutemeter.service.lease import LeaseKeeper
from tests.support.clock import FakeBudget, FakeClock
from tests.support.fakes import FakeSyncStore

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
LEASE = 3
MARGIN = 0.5
BEAT = heartbeat_interval(LEASE)


def _eventually(condition: Callable[[], bool], within: float = 10 * BEAT) -> bool:
    """Poll ``condition`` until it holds or ``within`` seconds have passed."""
    give_up = time.monotonic() + within
    while time.monotonic() < give_up:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _keeper(store: FakeSyncStore, clock: FakeClock, budget: FakeBudget | None) -> LeaseKeeper:
    return LeaseKeeper(store, clock, "src", "runner-a", lease_seconds=LEASE,
                       margin_seconds=MARGIN, budget=budget)


@pytest.mark.parametrize("remaining", [None, 30.0])
def test_the_heartbeat_renews_while_there_is_budget_or_none(remaining: float | None) -> None:
    store, clock = FakeSyncStore(), FakeClock(T0)
    keeper = _keeper(store, clock, FakeBudget(remaining))
    keeper.acquire()
    try:
        clock.advance(2)
        assert _eventually(lambda: store.leases["src"].until == T0 + timedelta(seconds=5))
    finally:
        keeper.release()


def test_the_heartbeat_stops_renewing_once_the_budget_is_spent() -> None:
    # GIVEN runner A holding the lease, its heartbeat renewing it
    store, clock, budget = FakeSyncStore(), FakeClock(T0), FakeBudget(30.0)
    keeper = _keeper(store, clock, budget)
    keeper.acquire()
    try:
        clock.advance(2)
        assert _eventually(lambda: store.leases["src"].until == T0 + timedelta(seconds=5))
        # WHEN its budget is spent while it is stuck (no check(), no write)
        budget.remaining = 0.0
        time.sleep(1.5 * BEAT)  # a beat that was under way when the budget ran out is over
        until = store.leases["src"].until
        clock.advance(2)
        time.sleep(2.5 * BEAT)
        # THEN no renewal moved the lease's end, though the wall clock and beats moved on
        assert store.leases["src"].until == until
        # ... so once it runs out another runner takes the source over
        clock.advance(LEASE + MARGIN + 1)
        thief = store.acquire_lease("src", "runner-b", now=clock.now(), lease_seconds=LEASE,
                                    margin_seconds=MARGIN)
        assert thief.token == keeper.token + 1
        # ... and the stuck run, waking, can neither go on nor write
        with pytest.raises(LeaseLostError):
            keeper.check()
        with pytest.raises(LeaseLostError):
            store.commit_progress("src", until=T0 + timedelta(minutes=15), node_id="node-a",
                                  baseline_taken_at=T0, at=clock.now(), fence=keeper.token)
        assert store.get_state("src").last_completed_until is None
    finally:
        keeper.release()
    assert store.get_lease("src") == thief  # A's release did not free B's lease


def test_a_negative_remaining_budget_counts_as_spent() -> None:
    store, clock, budget = FakeSyncStore(), FakeClock(T0), FakeBudget(-5.0)
    keeper = _keeper(store, clock, budget)
    grant = keeper.acquire()
    try:
        clock.advance(2)
        time.sleep(2.5 * BEAT)
        assert store.leases["src"].until == grant.until
    finally:
        keeper.release()
