"""The lease contract, against the fakes, moto and DynamoDB Local (threads: fakes and Local).

A lease is fields of the source's sync-state item: holder, a fencing token that only grows, and
``lease_until``. The item is never deleted, so the token never starts again.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from minutemeter.domain.errors import LeaseHeldError, LeaseLostError
from minutemeter.domain.model import Checkpoint, JobResult, JobStatus
from minutemeter.ports import LeaseGrant
from tests.support.backends import Backend

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
ACCOUNT = "6f1c2a4e-0b7d-4c55-9a0e-3f2b8d1e7c90"
LEASE = 10
MARGIN = 2.0


def _acquire(backend: Backend, holder: str, at: datetime) -> LeaseGrant:
    return backend.state.sync.acquire_lease(
        "src", holder, now=at, lease_seconds=LEASE, margin_seconds=MARGIN
    )


def _commit(backend: Backend, grant: LeaseGrant, minutes: int) -> None:
    backend.state.sync.commit_progress(
        "src", until=T0 + timedelta(minutes=minutes), node_id="node-a", baseline_taken_at=T0,
        at=T0, fence=grant.token,
    )


def test_a_held_lease_is_refused_until_it_expires_by_more_than_the_margin(
    any_backend: Backend,
) -> None:
    first = _acquire(any_backend, "runner-a", T0)
    assert (first.token, first.until) == (1, T0 + timedelta(seconds=LEASE))
    for seconds in (0, LEASE, LEASE + MARGIN):  # still held, or expired by no more than margin
        with pytest.raises(LeaseHeldError) as held:
            _acquire(any_backend, "runner-b", T0 + timedelta(seconds=seconds))
        assert held.value.holder == "runner-a"
    taken = _acquire(any_backend, "runner-b", T0 + timedelta(seconds=LEASE + MARGIN + 0.001))
    assert (taken.holder, taken.token) == ("runner-b", 2)
    assert any_backend.state.sync.get_lease("src") == taken


def test_renewal_extends_and_a_taken_over_lease_cannot_be_renewed(any_backend: Backend) -> None:
    grant = _acquire(any_backend, "runner-a", T0)
    renewed = any_backend.state.sync.renew_lease(
        grant, now=T0 + timedelta(seconds=8), lease_seconds=LEASE
    )
    assert renewed.until == T0 + timedelta(seconds=18)
    with pytest.raises(LeaseHeldError):  # the old end plus margin has passed, the new one not
        _acquire(any_backend, "runner-b", T0 + timedelta(seconds=LEASE + MARGIN + 1))
    thief = _acquire(any_backend, "runner-b", T0 + timedelta(seconds=18 + MARGIN + 1))
    with pytest.raises(LeaseLostError):
        any_backend.state.sync.renew_lease(renewed, now=T0 + timedelta(seconds=30),
                                           lease_seconds=LEASE)
    assert any_backend.state.sync.get_lease("src") == thief


def test_release_frees_the_lease_and_the_token_keeps_growing(any_backend: Backend) -> None:
    tokens = []
    for round_ in range(3):
        grant = _acquire(any_backend, f"runner-{round_}", T0)
        tokens.append(grant.token)
        assert any_backend.state.sync.release_lease(grant) is True
        assert any_backend.state.sync.get_lease("src") is None
        assert any_backend.state.sync.release_lease(grant) is False  # not ours any more
    assert tokens == [1, 2, 3]


def test_fencing_rejects_every_state_write_of_a_stale_holder(any_backend: Backend) -> None:
    # GIVEN runner A whose lease was taken over by runner B after it expired
    stale = _acquire(any_backend, "runner-a", T0)
    _commit(any_backend, stale, 15)
    current = _acquire(any_backend, "runner-b", T0 + timedelta(minutes=5))
    _commit(any_backend, current, 30)
    later = Checkpoint("node-a", ACCOUNT, 500, T0 + timedelta(minutes=29))
    assert any_backend.state.checkpoints.advance_checkpoints(
        "src", [later], fence=current.token) == 1
    # WHEN A tries to commit anything
    with pytest.raises(LeaseLostError):
        _commit(any_backend, stale, 45)
    newer = Checkpoint("node-a", ACCOUNT, 900, T0 + timedelta(minutes=44))
    older = Checkpoint("node-a", ACCOUNT, 100, T0 + timedelta(minutes=14))
    for checkpoints in ([newer], [older]):  # a stale write is refused even when it is a no-op
        with pytest.raises(LeaseLostError):
            any_backend.state.checkpoints.advance_checkpoints("src", checkpoints,
                                                              fence=stale.token)
    job = JobResult("job-a", "collect", "src", T0, status=JobStatus.OK, written_minutes=7,
                    finished_at=T0)
    with pytest.raises(LeaseLostError):
        any_backend.state.sync.record_result(job, expires_at=T0 + timedelta(days=1),
                                             fence=stale.token)
    # THEN nothing it wrote is visible in the source's state
    state = any_backend.state.sync.get_state("src")
    assert state.last_completed_until == T0 + timedelta(minutes=30)
    assert state.last_job is None
    assert any_backend.state.checkpoints.get_checkpoints("src", "node-a", [ACCOUNT]) == {
        ACCOUNT: later}


def test_fenced_checkpoints_keep_the_ones_that_are_not_behind(any_backend: Backend) -> None:
    grant = _acquire(any_backend, "runner-a", T0)
    other = "0a7f3e55-1c2d-4e6f-8a9b-0c1d2e3f4a5b"
    ahead = Checkpoint("node-a", ACCOUNT, 10, T0 + timedelta(minutes=9))
    any_backend.state.checkpoints.advance_checkpoints("src", [ahead], fence=grant.token)
    behind = Checkpoint("node-a", ACCOUNT, 5, T0 + timedelta(minutes=3))
    fresh = Checkpoint("node-a", other, 7, T0 + timedelta(minutes=3))
    moved = any_backend.state.checkpoints.advance_checkpoints("src", [behind, fresh],
                                                              fence=grant.token)
    assert moved == 1
    assert any_backend.state.checkpoints.get_checkpoints("src", "node-a", [ACCOUNT, other]) == {
        ACCOUNT: ahead,
        other: fresh,
    }


def test_clock_skew_within_the_margin_never_takes_over_early(any_backend: Backend) -> None:
    # Runner B's clock is 1.5 s ahead of runner A's (less than the 2 s margin).
    skew = timedelta(seconds=1.5)
    grant = _acquire(any_backend, "runner-a", T0)
    true_end = grant.until  # in A's time
    with pytest.raises(LeaseHeldError):  # just before the true end, B's clock reads end + 1.5 s
        _acquire(any_backend, "runner-b", true_end - timedelta(milliseconds=1) + skew)
    assert _acquire(any_backend, "runner-b", true_end + skew + timedelta(seconds=MARGIN)).token == 2


def test_clock_skew_beyond_the_margin_is_caught_by_fencing(any_backend: Backend) -> None:
    # Runner B's clock is 30 s ahead: it takes over while A still believes it holds the lease.
    grant = _acquire(any_backend, "runner-a", T0)
    _acquire(any_backend, "runner-b", T0 + timedelta(seconds=30))
    with pytest.raises(LeaseLostError):
        _commit(any_backend, grant, 15)
    assert any_backend.state.sync.get_state("src").last_completed_until is None


def test_concurrent_acquirers_one_wins(concurrent_backend: Backend) -> None:
    winners: list[LeaseGrant] = []
    refused: list[LeaseHeldError] = []
    barrier = threading.Barrier(8)

    def contender(index: int) -> None:
        barrier.wait()
        try:
            winners.append(_acquire(concurrent_backend, f"runner-{index}", T0))
        except LeaseHeldError as exc:
            refused.append(exc)

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1 and len(refused) == 7
    assert {exc.holder for exc in refused} == {winners[0].holder}
