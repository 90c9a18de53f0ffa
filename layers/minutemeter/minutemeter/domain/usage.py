"""Cumulative counters to minute usage (shared/spec/exporter-api.md, "Usage semantics").

For one (node, account) counter, usage is the sum of increases between consecutive samples; the
increase between ``a`` and ``b`` belongs to the UTC minute that contains ``b.taken_at``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from minutemeter.domain.model import (
    UNKNOWN_VALUE,
    Checkpoint,
    MinuteUsage,
    ResetEvent,
    ResetPolicy,
    Snapshot,
)
from minutemeter.domain.timeutil import floor_minute


@dataclass
class UsageResult:
    """Buckets with usage > 0, the checkpoints to store, and what happened on the way."""

    buckets: list[MinuteUsage] = field(default_factory=list)
    checkpoints: dict[str, Checkpoint] = field(default_factory=dict)
    resets: list[ResetEvent] = field(default_factory=list)
    processed_samples: int = 0
    skipped_samples: int = 0
    baseline_samples: int = 0
    baseline_taken_at: datetime | None = None


def compute_usage(
    snapshots: Iterable[Snapshot],
    checkpoints: Mapping[str, Checkpoint],
    *,
    node_id: str,
    baseline_pending: bool,
    reset_policy: ResetPolicy,
) -> UsageResult:
    """Diff ``snapshots`` (ascending ``taken_at``) against ``checkpoints`` (by account id).

    - ``baseline_pending``: the source has never yielded a snapshot; the first one given here is
      its baseline and bills nothing. An account present in it with an unreadable sample gets a
      checkpoint of unknown value, so that its next valid value is a baseline too (billing it
      from zero would bill the counter's whole history).
    - A sample at or before its checkpoint's ``taken_at`` was already accounted for (a replay of
      a window whose checkpoints were stored): it is skipped.
    - An account with no checkpoint after the baseline is new: its first value is usage.
    - A lower value is a reset, handled by ``reset_policy`` and always reported.
    Only checkpoints that moved are returned.
    """
    result = UsageResult()
    current = dict(checkpoints)
    open_buckets: dict[tuple[str, datetime], MinuteUsage] = {}
    for index, snapshot in enumerate(snapshots):
        is_baseline = baseline_pending and index == 0
        if is_baseline:
            result.baseline_taken_at = snapshot.taken_at
            for account in sorted(snapshot.unreadable_accounts - current.keys()):
                unknown = Checkpoint(node_id, account, UNKNOWN_VALUE, snapshot.taken_at)
                current[account] = result.checkpoints[account] = unknown
        for sample in snapshot.samples:
            result.processed_samples += 1
            previous = current.get(sample.account_id)
            if previous is not None and sample.taken_at <= previous.taken_at:
                result.skipped_samples += 1
                continue
            moved = Checkpoint(node_id, sample.account_id, sample.total_bytes, sample.taken_at)
            current[sample.account_id] = moved
            result.checkpoints[sample.account_id] = moved
            if (previous is None and is_baseline) or (
                previous is not None and not previous.value_known
            ):
                result.baseline_samples += 1
                continue
            start = previous.total_bytes if previous is not None else 0
            increase, reset = _increase(start, sample.total_bytes, reset_policy)
            if reset:
                result.resets.append(
                    ResetEvent(
                        node_id=node_id,
                        account_id=sample.account_id,
                        taken_at=sample.taken_at,
                        previous_bytes=start,
                        current_bytes=sample.total_bytes,
                        policy=reset_policy,
                        billed_bytes=increase,
                    )
                )
            _add(open_buckets, node_id, sample.account_id, sample.taken_at, start,
                 sample.total_bytes, increase, reset)
    result.buckets = sorted(
        (bucket for bucket in open_buckets.values() if bucket.bytes > 0),
        key=lambda b: (b.account_id, b.minute),
    )
    return result


def _increase(start: int, value: int, policy: ResetPolicy) -> tuple[int, bool]:
    if value >= start:
        return value - start, False
    return (value if policy is ResetPolicy.FROM_ZERO else 0), True


def _add(
    buckets: dict[tuple[str, datetime], MinuteUsage],
    node_id: str,
    account_id: str,
    taken_at: datetime,
    start: int,
    value: int,
    increase: int,
    reset: bool,
) -> None:
    minute = floor_minute(taken_at)
    key = (account_id, minute)
    bucket = buckets.get(key)
    if bucket is None:
        buckets[key] = MinuteUsage(
            node_id=node_id,
            account_id=account_id,
            minute=minute,
            bytes=increase,
            counter_start=start,
            counter_end=value,
            first_taken_at=taken_at,
            last_taken_at=taken_at,
            samples=1,
            resets=int(reset),
        )
        return
    buckets[key] = replace(
        bucket,
        bytes=bucket.bytes + increase,
        counter_end=value,
        last_taken_at=taken_at,
        samples=bucket.samples + 1,
        resets=bucket.resets + int(reset),
    )
