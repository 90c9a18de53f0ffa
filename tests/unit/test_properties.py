"""Properties over random counter histories: the domain agrees with the spec's oracle
(``minutemeter.local.truth``), chunking does not change what is billed, and quota allocation
conserves bytes however a month is split into reservations."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from minutemeter.domain.model import (
    BillingProfile,
    Checkpoint,
    MinuteUsage,
    QuotaPlan,
    ResetPolicy,
    Sample,
    Snapshot,
)
from minutemeter.domain.rating import included_total, plan_entries, price
from minutemeter.domain.timeutil import format_second
from minutemeter.domain.usage import UsageResult, compute_usage
from minutemeter.local.truth import expected_usage

T0 = datetime(2026, 1, 31, 23, 50, tzinfo=UTC)  # the 20 minutes cross a month end
UNTIL = T0 + timedelta(minutes=21)
ACCOUNTS = (
    "0a7f3e55-1c2d-4e6f-8a9b-0c1d2e3f4a5b",
    "6f1c2a4e-0b7d-4c55-9a0e-3f2b8d1e7c90",
    "c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f",
)
POLICIES = st.sampled_from([ResetPolicy.SKIP, ResetPolicy.FROM_ZERO])
History = list[tuple[datetime, dict[str, int]]]

# sub-minute offsets in milliseconds, biased towards the :00.000 and :59.999 edges
_OFFSET_MS = st.one_of(st.integers(0, 59_999), st.sampled_from([0, 1, 59_998, 59_999]))


@st.composite
def histories(draw: st.DrawFn) -> History:
    """Ascending snapshots over ~20 minutes; counters grow, sometimes reset, accounts join late."""
    instants = draw(
        st.lists(
            st.builds(lambda m, ms: m * 60_000 + ms, st.integers(0, 19), _OFFSET_MS),
            min_size=1,
            max_size=40,
            unique=True,
        )
    )
    times = [T0 + timedelta(milliseconds=ms) for ms in sorted(instants)]
    history: History = [(at, {}) for at in times]
    for account in ACCOUNTS:
        joins = draw(st.integers(0, len(times)))
        value = draw(st.integers(0, 10**6))
        for index in range(joins, len(times)):
            if draw(st.integers(0, 9)) == 0:
                continue  # absent from this snapshot
            step = draw(st.integers(0, 9))
            if step == 0:
                value = draw(st.integers(0, 1000))  # reset: starts again near 0
            elif step > 1:
                value += draw(st.integers(0, 10**6))  # step == 1: unchanged
            history[index][1][account] = value
    return history


def to_snapshots(history: History) -> list[Snapshot]:
    return [
        Snapshot(at, tuple(Sample(acc, total, at) for acc, total in values.items()))
        for at, values in history
    ]


def usage_of(
    snapshots: list[Snapshot],
    checkpoints: dict[str, Checkpoint],
    baseline: bool,
    policy: ResetPolicy,
) -> UsageResult:
    return compute_usage(
        snapshots, checkpoints, node_id="node-a", baseline_pending=baseline, reset_policy=policy
    )


def totals(results: list[UsageResult]) -> dict[tuple[str, str], int]:
    summed: dict[tuple[str, str], int] = defaultdict(int)
    for result in results:
        for bucket in result.buckets:
            summed[(bucket.account_id, format_second(bucket.minute))] += bucket.bytes
    return dict(summed)


@settings(max_examples=200, deadline=None)
@given(history=histories(), policy=POLICIES)
def test_compute_usage_matches_the_spec_oracle(history: History, policy: ResetPolicy) -> None:
    result = usage_of(to_snapshots(history), {}, True, policy)

    assert totals([result]) == expected_usage(
        history, start=T0, until=UNTIL, reset_policy=policy.value
    )
    assert all(bucket.bytes > 0 for bucket in result.buckets)


@settings(max_examples=200, deadline=None)
@given(history=histories(), policy=POLICIES, data=st.data())
def test_chunked_runs_bill_the_same_as_one_run(
    history: History, policy: ResetPolicy, data: st.DataObject
) -> None:
    # GIVEN the history cut into consecutive chunks at arbitrary snapshot indices
    snapshots = to_snapshots(history)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(snapshots)), max_size=6)))
    bounds = [0, *cuts, len(snapshots)]

    # WHEN each chunk runs on the checkpoints stored so far
    stored: dict[str, Checkpoint] = {}
    seen_snapshot = False
    results: list[UsageResult] = []
    for lo, hi in pairwise(bounds):
        chunk = snapshots[lo:hi]
        result = usage_of(chunk, stored, not seen_snapshot, policy)
        stored.update(result.checkpoints)
        seen_snapshot = seen_snapshot or bool(chunk)
        results.append(result)

    # THEN the total per (account, minute) is that of a single run
    assert totals(results) == totals([usage_of(snapshots, {}, True, policy)])
    # and the stored checkpoints are each account's last sample
    last = {acc: (at, v) for at, values in history for acc, v in values.items()}
    assert {a: (c.taken_at, c.total_bytes) for a, c in stored.items()} == last


@settings(max_examples=200, deadline=None)
@given(history=histories(), policy=POLICIES)
def test_billed_bytes_are_the_sum_of_counter_increases(
    history: History, policy: ResetPolicy
) -> None:
    # the spec, per account: increases between consecutive samples; a first value counts unless
    # it is in the baseline snapshot; a drop bills 0 (skip) or the new value (from-zero)
    expected: dict[str, int] = defaultdict(int)
    previous: dict[str, int] = {}
    for index, (_, values) in enumerate(history):
        for account, value in values.items():
            if account not in previous:
                expected[account] += 0 if index == 0 else value
            elif value >= previous[account]:
                expected[account] += value - previous[account]
            elif policy is ResetPolicy.FROM_ZERO:
                expected[account] += value
            previous[account] = value

    result = usage_of(to_snapshots(history), {}, True, policy)

    billed: dict[str, int] = defaultdict(int)
    for bucket in result.buckets:
        billed[bucket.account_id] += bucket.bytes
        if bucket.resets == 0:
            assert bucket.bytes == bucket.counter_end - bucket.counter_start
    assert {a: n for a, n in billed.items() if n} == {a: n for a, n in expected.items() if n}
    drops = sum(
        1
        for (_, before), (_, after) in pairwise(history)
        for account, value in after.items()
        if account in before and value < before[account]
    )
    assert len(result.resets) >= drops  # every drop is reported, none silently dropped


# --- quota allocation ---------------------------------------------------------------------------

A = ACCOUNTS[1]
PROFILE_PRICE = Decimal("0.000001")


def month_usage(byte_counts: list[int]) -> list[MinuteUsage]:
    usages = []
    for minute, nbytes in enumerate(byte_counts):
        at = T0 + timedelta(minutes=minute)
        usages.append(MinuteUsage("node-a", A, at, nbytes, 0, nbytes, at, at, 1))
    return usages


@settings(max_examples=200, deadline=None)
@given(
    byte_counts=st.lists(st.integers(1, 10**9), min_size=1, max_size=40),
    included=st.integers(0, 2 * 10**10),
    data=st.data(),
)
def test_quota_split_into_reservations_conserves_bytes(
    byte_counts: list[int], included: int, data: st.DataObject
) -> None:
    # GIVEN one account-month's usages reserved in several consecutive plans
    profile = BillingProfile(included, PROFILE_PRICE, Decimal("1.5"), "v1")
    usages = month_usage(byte_counts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(usages)), max_size=5)))
    bounds = [0, *cuts, len(usages)]

    used = 0
    entries = []
    for number, (lo, hi) in enumerate(pairwise(bounds)):
        plan = QuotaPlan(
            f"batch-{number}", "src-a", A, "2026-01", used, profile, "run-1", T0,
            tuple(usages[lo:hi]),
        )
        plan_list = plan_entries(plan)
        assert [e.quota_before for e in plan_list[:1]] in ([], [used])
        entries.extend(plan_list)
        used += included_total(plan)

    # THEN included is capped by the quota, the rest is billable, and money is linear
    total = sum(byte_counts)
    total_included = sum(e.included_bytes for e in entries)
    total_billable = sum(e.billable_bytes for e in entries)
    assert total_included == min(total, included) == used
    assert total_billable == total - total_included
    assert sum(e.amount for e in entries) == price(total_billable, profile)
    assert all(e.included_bytes + e.billable_bytes == e.usage.bytes for e in entries)
    assert [e.quota_before for e in entries] == sorted(e.quota_before for e in entries)
