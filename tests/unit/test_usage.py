"""Counters to minute buckets: baselines, new accounts, resets, replays and minute attribution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from minutemeter.domain.model import (
    Checkpoint,
    MinuteUsage,
    ResetEvent,
    ResetPolicy,
    Sample,
    Snapshot,
)
from minutemeter.domain.usage import UsageResult, compute_usage

A = "6f1c2a4e-0b7d-4c55-9a0e-3f2b8d1e7c90"
B = "0a7f3e55-1c2d-4e6f-8a9b-0c1d2e3f4a5b"
T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
_ACCOUNTS = {"a": A, "b": B}


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def snap(at: datetime, **values: int) -> Snapshot:
    return Snapshot(at, tuple(Sample(_ACCOUNTS[k], v, at) for k, v in values.items()))


def run(
    snapshots: list[Snapshot],
    checkpoints: dict[str, Checkpoint] | None = None,
    *,
    baseline: bool = False,
    policy: ResetPolicy = ResetPolicy.SKIP,
) -> UsageResult:
    return compute_usage(
        snapshots,
        checkpoints or {},
        node_id="node-a",
        baseline_pending=baseline,
        reset_policy=policy,
    )


def per_minute(result: UsageResult) -> dict[tuple[str, datetime], int]:
    return {(b.account_id, b.minute): b.bytes for b in result.buckets}


def cp(account: str, total: int, at: datetime) -> Checkpoint:
    return Checkpoint("node-a", account, total, at)


def test_baseline_bills_nothing_and_sets_checkpoints() -> None:
    result = run([snap(t(15), a=1000, b=50)], baseline=True)

    assert result.buckets == []
    assert result.baseline_taken_at == t(15)
    assert result.baseline_samples == 2
    assert result.processed_samples == 2
    assert result.checkpoints == {A: cp(A, 1000, t(15)), B: cp(B, 50, t(15))}


def test_only_the_first_snapshot_is_the_baseline() -> None:
    result = run([snap(t(15), a=1000), snap(t(75), a=1300, b=40)], baseline=True)

    assert per_minute(result) == {(A, t(60)): 300, (B, t(60)): 40}
    assert result.baseline_samples == 1


def test_new_account_after_baseline_counts_from_zero() -> None:
    # GIVEN a source whose baseline is already stored (A known, B never seen)
    result = run([snap(t(20), a=100, b=70)], {A: cp(A, 90, t(0))})

    # THEN B's first value is all usage, with counter_start 0
    by_account = {b.account_id: b for b in result.buckets}
    assert by_account[B].bytes == 70
    assert by_account[B].counter_start == 0
    assert by_account[A].bytes == 10
    assert result.baseline_taken_at is None


def test_reset_with_skip_bills_nothing_records_it_and_moves_checkpoint_down() -> None:
    result = run([snap(t(30), a=5)], {A: cp(A, 900, t(0))}, policy=ResetPolicy.SKIP)

    assert result.buckets == []
    assert result.resets == [
        ResetEvent("node-a", A, t(30), 900, 5, ResetPolicy.SKIP, billed_bytes=0)
    ]
    assert result.checkpoints[A] == cp(A, 5, t(30))


def test_reset_with_from_zero_bills_the_new_value() -> None:
    result = run([snap(t(30), a=5)], {A: cp(A, 900, t(0))}, policy=ResetPolicy.FROM_ZERO)

    assert per_minute(result) == {(A, T0): 5}
    assert result.buckets[0].resets == 1
    assert result.buckets[0].counter_start == 900
    assert result.buckets[0].counter_end == 5
    assert result.resets[0].billed_bytes == 5
    assert result.checkpoints[A].total_bytes == 5


def test_growth_after_a_skipped_reset_counts_from_the_new_value() -> None:
    result = run([snap(t(10), a=5), snap(t(70), a=25)], {A: cp(A, 900, t(0))})

    assert per_minute(result) == {(A, t(60)): 20}
    assert len(result.resets) == 1


@pytest.mark.parametrize("at", [t(-30), t(0)])
def test_samples_at_or_before_the_checkpoint_are_skipped(at: datetime) -> None:
    # GIVEN a window replayed after its checkpoints were stored
    result = run([snap(at, a=500)], {A: cp(A, 400, t(0))})

    # THEN nothing is billed again and the checkpoint does not move
    assert result.buckets == []
    assert result.checkpoints == {}
    assert result.skipped_samples == 1
    assert result.processed_samples == 1
    assert result.resets == []


def test_replay_of_a_whole_window_is_idempotent() -> None:
    history = [snap(t(10), a=0), snap(t(50), a=100), snap(t(70), a=250)]
    first = run(history, baseline=True)

    replay = run(history, first.checkpoints)

    assert replay.buckets == []
    assert replay.skipped_samples == 3
    assert per_minute(first) == {(A, T0): 100, (A, t(60)): 150}


def test_attribution_to_the_minute_of_the_later_sample_across_the_boundary() -> None:
    at_59_999 = t(59.999)
    at_00_000 = t(60)
    result = run(
        [snap(t(30), a=0), snap(at_59_999, a=10), snap(at_00_000, a=25)], baseline=True
    )

    assert per_minute(result) == {(A, T0): 10, (A, t(60)): 15}
    first, second = result.buckets
    assert (first.counter_start, first.counter_end) == (0, 10)
    assert (second.counter_start, second.counter_end) == (10, 25)
    assert second.first_taken_at == at_00_000


def test_increase_spanning_minutes_goes_to_the_later_minute() -> None:
    result = run([snap(t(-5), a=0), snap(t(185), a=300)], baseline=True)

    assert per_minute(result) == {(A, t(180)): 300}


def test_several_samples_in_one_minute_accumulate() -> None:
    result = run(
        [snap(t(5), a=100), snap(t(10), a=130), snap(t(20), a=130), snap(t(50), a=200)],
        {A: cp(A, 90, t(-20))},
    )

    assert result.buckets == [
        MinuteUsage(
            node_id="node-a",
            account_id=A,
            minute=T0,
            bytes=110,
            counter_start=90,
            counter_end=200,
            first_taken_at=t(5),
            last_taken_at=t(50),
            samples=4,
        )
    ]
    assert result.checkpoints == {A: cp(A, 200, t(50))}


def test_zero_usage_buckets_are_omitted() -> None:
    result = run([snap(t(5), a=100, b=7), snap(t(65), a=100, b=9)], baseline=True)

    assert per_minute(result) == {(B, t(60)): 2}
    assert result.checkpoints[A] == cp(A, 100, t(65))


def test_only_moved_checkpoints_are_returned() -> None:
    stored = {A: cp(A, 10, t(0)), B: cp(B, 20, t(0))}

    result = run([snap(t(30), a=15)], stored)

    assert result.checkpoints == {A: cp(A, 15, t(30))}
    assert stored[A] == cp(A, 10, t(0))  # the input mapping is not mutated


def test_buckets_are_sorted_by_account_then_minute() -> None:
    result = run(
        [snap(t(5), a=0, b=0), snap(t(65), a=1, b=1), snap(t(125), a=2, b=2)], baseline=True
    )

    keys = [(b.account_id, b.minute) for b in result.buckets]
    assert keys == sorted(keys)
    assert keys[0][0] == B  # "0a7f..." sorts before "6f1c..."


def test_an_unreadable_sample_in_the_baseline_keeps_its_account_a_baseline() -> None:
    # GIVEN a baseline snapshot where A's sample was quarantined (A is present, value unknown)
    baseline = Snapshot(t(15), (Sample(B, 50, t(15)),), unreadable_accounts=frozenset({A}))
    first = run([baseline], baseline=True)
    assert first.checkpoints[A].value_known is False
    # WHEN A's next valid value arrives in a later chunk
    later = run([snap(t(75), a=9_000_000, b=80)], dict(first.checkpoints))
    # THEN it is A's baseline, not usage since zero (that would bill its whole history)
    assert per_minute(later) == {(B, T0 + timedelta(minutes=1)): 30}
    assert later.checkpoints[A] == cp(A, 9_000_000, t(75))
    after = run([snap(t(135), a=9_000_400)], dict(later.checkpoints))
    assert per_minute(after) == {(A, T0 + timedelta(minutes=2)): 400}


def test_an_unreadable_sample_after_the_baseline_is_not_a_baseline() -> None:
    # A new account whose first sample is unreadable still counts from zero when readable.
    snapshot = Snapshot(t(75), (), unreadable_accounts=frozenset({A}))
    result = run([snapshot, snap(t(135), a=700)], {B: cp(B, 1, t(15))})
    assert per_minute(result) == {(A, T0 + timedelta(minutes=2)): 700}
