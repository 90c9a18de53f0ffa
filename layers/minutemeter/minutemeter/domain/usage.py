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
    valid_since: datetime | None = None,
) -> UsageResult:
    """Diff ``snapshots`` (ascending ``taken_at``) against ``checkpoints`` (by account id).

    The whole of :class:`UsageAccumulator` in one call; see it for the rules.
    """
    accumulator = UsageAccumulator(
        node_id=node_id, baseline_pending=baseline_pending, reset_policy=reset_policy,
        valid_since=valid_since,
    )
    accumulator.load(checkpoints)
    for snapshot in snapshots:
        accumulator.add(snapshot)
    return accumulator.finish()


class UsageAccumulator:
    """Counters to minute buckets, one snapshot at a time (pages stream through it).

    - ``baseline_pending``: the source (or its current node/env identity) has not yielded a
      snapshot yet; the first one added is its baseline and bills nothing. An account present
      in it with an unreadable sample gets a checkpoint of unknown value, so that its next valid
      value is a baseline too (billing it from zero would bill the counter's whole history).
    - A checkpoint taken before ``valid_since`` (the identity's baseline; with
      ``baseline_pending``, the baseline snapshot added here) belongs to counters of an earlier
      node/env identity and is ignored: no usage is computed against a value read elsewhere.
    - A sample at or before its checkpoint's ``taken_at`` was already accounted for (a replay of
      a window whose checkpoints were stored): it is skipped.
    - An account with no checkpoint after the baseline is new: its first value is usage.
    - A lower value is a reset, handled by ``reset_policy`` and always reported.

    Memory is one checkpoint per account plus the open minute buckets: callers :meth:`load` the
    checkpoints of the accounts a page names (:meth:`unloaded`) before adding its snapshots.
    Only checkpoints that moved are in the result.
    """

    def __init__(
        self,
        *,
        node_id: str,
        baseline_pending: bool,
        reset_policy: ResetPolicy,
        valid_since: datetime | None = None,
    ) -> None:
        self.node_id = node_id
        self._baseline_pending = baseline_pending
        self._reset_policy = reset_policy
        self._valid_since = None if baseline_pending else valid_since
        self._current: dict[str, Checkpoint] = {}
        self._loaded: set[str] = set()
        self._open: dict[tuple[str, datetime], MinuteUsage] = {}
        self._result = UsageResult()
        self._snapshots = 0

    def unloaded(self, accounts: Iterable[str]) -> set[str]:
        """Accounts among ``accounts`` whose checkpoint was not looked up yet."""
        return {account for account in accounts if account not in self._loaded}

    def load(self, checkpoints: Mapping[str, Checkpoint], looked_up: Iterable[str] = ()) -> None:
        """Stored checkpoints by account; ``looked_up``: accounts asked for (found or not)."""
        self._loaded.update(looked_up)
        for account, checkpoint in checkpoints.items():
            self._loaded.add(account)
            self._current.setdefault(account, checkpoint)

    def add(self, snapshot: Snapshot) -> None:
        result = self._result
        is_baseline = self._baseline_pending and self._snapshots == 0
        self._snapshots += 1
        if is_baseline:
            result.baseline_taken_at = self._valid_since = snapshot.taken_at
            for account in sorted(snapshot.unreadable_accounts):
                if self._previous(account) is None:
                    unknown = Checkpoint(self.node_id, account, UNKNOWN_VALUE, snapshot.taken_at)
                    self._current[account] = result.checkpoints[account] = unknown
        for sample in snapshot.samples:
            result.processed_samples += 1
            previous = self._previous(sample.account_id)
            if previous is not None and sample.taken_at <= previous.taken_at:
                result.skipped_samples += 1
                continue
            moved = Checkpoint(self.node_id, sample.account_id, sample.total_bytes,
                               sample.taken_at)
            self._current[sample.account_id] = moved
            result.checkpoints[sample.account_id] = moved
            if (previous is None and is_baseline) or (
                previous is not None and not previous.value_known
            ):
                result.baseline_samples += 1
                continue
            start = previous.total_bytes if previous is not None else 0
            increase, reset = _increase(start, sample.total_bytes, self._reset_policy)
            if reset:
                result.resets.append(
                    ResetEvent(
                        node_id=self.node_id,
                        account_id=sample.account_id,
                        taken_at=sample.taken_at,
                        previous_bytes=start,
                        current_bytes=sample.total_bytes,
                        policy=self._reset_policy,
                        billed_bytes=increase,
                    )
                )
            _add(self._open, self.node_id, sample.account_id, sample.taken_at, start,
                 sample.total_bytes, increase, reset)

    def finish(self) -> UsageResult:
        """The buckets with usage (by account, then minute) and the moved checkpoints."""
        self._result.buckets = sorted(
            (bucket for bucket in self._open.values() if bucket.bytes > 0),
            key=lambda b: (b.account_id, b.minute),
        )
        return self._result

    def _previous(self, account: str) -> Checkpoint | None:
        checkpoint = self._current.get(account)
        if checkpoint is None:
            return None
        if self._valid_since is not None and checkpoint.taken_at < self._valid_since:
            return None  # read from another node/env identity: never a previous value
        return checkpoint


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
