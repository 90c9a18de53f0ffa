"""One chunk of a reconcile: recompute it from the exporter, compare it with the ledger, and
correct the difference (``service.reconcile`` runs the window chunk by chunk and resumes it).

The exporter's answer is evidence: a bucket it explains differently from the ledger gets a
correcting entry, but a minute it returned no data for is never taken back (no data is not zero
usage, shared/spec/exporter-api.md), so a confirm that would need one refuses the chunk.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from minutemeter.domain.errors import InputError
from minutemeter.domain.model import (
    UNKNOWN_VALUE,
    Checkpoint,
    CorrectionSpec,
    LedgerEntry,
    MinuteUsage,
    SourceConfig,
    SyncState,
    Window,
)
from minutemeter.domain.timeutil import format_second
from minutemeter.domain.usage import UsageAccumulator, UsageResult
from minutemeter.domain.validation import SampleRules
from minutemeter.ports import Budget, LedgerFilter
from minutemeter.service.commit import CommitContext, CommitTotals, commit_buckets
from minutemeter.service.deps import BillingDeps, fetch_time_left
from minutemeter.service.fetch import WindowFetch
from minutemeter.service.lease import LeaseKeeper

LOOKBACK = timedelta(minutes=10)  # where to find each counter's value at a chunk's start

BucketKey = tuple[str, str, datetime]  # (node, account, minute)


class NoEvidenceError(InputError):
    """A confirm would take back billed usage for minutes the exporter returned no data for
    (shared/spec/exporter-api.md: no data is not zero usage): nothing of the chunk is written."""


@dataclass(frozen=True)
class Difference:
    node_id: str
    account_id: str
    minute: datetime
    ledger_bytes: int
    exporter_bytes: int
    reason: str  # missing | different | unexplained | no_data (unverifiable)

    def to_json(self) -> dict[str, object]:
        return {
            "node_id": self.node_id,
            "account_id": self.account_id,
            "minute": format_second(self.minute),
            "ledger_bytes": self.ledger_bytes,
            "exporter_bytes": self.exporter_bytes,
            "difference_bytes": self.exporter_bytes - self.ledger_bytes,
            "reason": self.reason,
        }


def reconcile_chunk(
    deps: BillingDeps,
    source: SourceConfig,
    state: SyncState,
    chunk: Window,
    now: datetime,
    *,
    reconcile_id: str,
    dry_run: bool,
    differences: list[Difference],
    lease: LeaseKeeper | None,
    budget: Budget | None,
) -> CommitTotals:
    """Compare ``chunk`` with the ledger and, unless ``dry_run``, write the corrections (under
    ``lease``) as entries of ``reconcile_id``; what was written and replayed is returned.

    Every difference found is appended to ``differences``, also when the chunk is refused: a
    confirm that would take back a minute without evidence raises :class:`NoEvidenceError`
    before anything of the chunk is written."""
    recomputed = _recompute(deps, source, state, chunk, now, budget)
    truth = recomputed.truth
    seen = {c.account_id for c in deps.checkpoints.list_checkpoints(source.source_id)}
    seen |= set(deps.reconciles.list_reconciled_accounts(source.source_id))
    accounts = seen | {account for _, account, _ in truth}
    corrections: list[CorrectionSpec] = []
    unverifiable: list[Difference] = []
    for account in sorted(accounts):
        entries = list(deps.ledger.export(LedgerFilter(
            source_id=source.source_id, account_id=account, since=chunk.since, until=chunk.until)))
        last_seen = recomputed.last_seen.get(account)
        for difference, spec in _compare(truth, entries, account, reconcile_id):
            if difference.exporter_bytes < difference.ledger_bytes and (
                last_seen is None or last_seen < difference.minute
            ):  # nothing read at or after the minute: no evidence that less was used
                difference = replace(difference, reason="no_data")
                unverifiable.append(difference)
                spec = None
            differences.append(difference)
            if spec is not None:
                corrections.append(spec)
    if unverifiable and not dry_run:
        first = unverifiable[0]
        raise NoEvidenceError(
            f"the exporter returned no samples of account {first.account_id} at or after "
            f"{format_second(first.minute)} (billed {first.ledger_bytes} B there), and "
            f"{len(unverifiable) - 1} more such minute(s) in "
            f"[{format_second(chunk.since)}, {format_second(chunk.until)}): no data is not "
            "zero usage, so nothing was taken back; reconcile a window the exporter still has"
        )
    if dry_run or not corrections:
        return CommitTotals()
    # Accounts only reconcile has billed are remembered before their corrections are written,
    # so a later reconcile of the window still finds them (the collector's are in checkpoints).
    deps.reconciles.add_reconciled_accounts(
        source.source_id, {c.usage.account_id for c in corrections} - seen
    )
    return commit_buckets(
        deps.ledger,
        corrections,
        deps.profiles.get_profiles({c.usage.account_id for c in corrections}),
        deps.settings.default_profile,
        CommitContext(source.source_id, reconcile_id, now),
        concurrency=deps.settings.commit_concurrency,
        guard=lease.check if lease is not None else None,
    )


@dataclass
class _Recomputed:
    """A chunk's buckets as the exporter explains them now, and per account the time of its
    last readable sample in the chunk (what a taken-back minute needs as evidence)."""

    truth: dict[BucketKey, MinuteUsage]
    last_seen: dict[str, datetime]


def _recompute(
    deps: BillingDeps, source: SourceConfig, state: SyncState, chunk: Window, now: datetime,
    budget: Budget | None,
) -> _Recomputed:
    """Stream the chunk (and a lookback for each counter's value at its start) from the
    exporter through the usage accumulator; memory is a page plus a few values per account."""
    fetched = Window(max(source.start, chunk.since - LOOKBACK), chunk.until)
    rules = SampleRules(window=fetched, now=now,
                        tolerance=timedelta(seconds=deps.settings.clock_tolerance_seconds),
                        max_counter=deps.settings.max_counter_bytes)
    fetch = WindowFetch(deps.readers, source, state, fetched, rules,
                        time_left=lambda: fetch_time_left(deps, budget))
    baseline = state.baseline_taken_at
    baseline_pending = baseline is not None and chunk.since <= baseline < chunk.until
    references: dict[str, Checkpoint] = {}  # each counter's last value before the chunk
    last_seen: dict[str, datetime] = {}
    usage_of: UsageAccumulator | None = None
    for snapshots in fetch:
        node_id = fetch.node_id or state.node_id or ""
        if usage_of is None:
            usage_of = UsageAccumulator(node_id=node_id, baseline_pending=baseline_pending,
                                        reset_policy=source.reset_policy, valid_since=baseline)
        for snapshot in snapshots:
            if snapshot.taken_at < chunk.since:
                for sample in snapshot.samples:
                    references[sample.account_id] = Checkpoint(
                        node_id, sample.account_id, sample.total_bytes, sample.taken_at)
                continue
            if baseline_pending and baseline is not None and snapshot.taken_at < baseline:
                continue
            named = {s.account_id for s in snapshot.samples} | snapshot.unreadable_accounts
            unloaded = usage_of.unloaded(named)
            if unloaded:
                usage_of.load(_references(deps, source, state, node_id, chunk, unloaded,
                                          references),
                              looked_up=unloaded)
            usage_of.add(snapshot)
            for sample in snapshot.samples:
                last_seen[sample.account_id] = sample.taken_at
    usage = usage_of.finish() if usage_of is not None else UsageResult()
    truth = {(b.node_id, b.account_id, b.minute): b for b in usage.buckets
             if chunk.since <= b.minute < chunk.until}
    return _Recomputed(truth, last_seen)


def _references(
    deps: BillingDeps, source: SourceConfig, state: SyncState, node_id: str, chunk: Window,
    accounts: set[str], lookback: dict[str, Checkpoint],
) -> dict[str, Checkpoint]:
    """Each account's counter value before the chunk, as far as it can be known.

    From the lookback; else from the last usage entry before the chunk (read from the source's
    current node and env, so at or after its baseline). An account without either that the
    collector has seen (it has a checkpoint) is not new, so its first value in the chunk is no
    usage since zero: its reference is the counter before the chunk's first usage entry of it,
    or, when it has none, unknown (the first value is a baseline). Only an account the
    collector never saw is new, and counts from zero. Without this, an idle account that the
    exporter stopped listing for longer than the lookback would come back billed its whole
    counter.
    """
    found = {account: lookback[account] for account in accounts if account in lookback}
    baseline = state.baseline_taken_at
    unexplained: set[str] = set()
    for account in accounts - found.keys():
        last = deps.ledger.last_usage_before(source.source_id, node_id, account, chunk.since)
        if last is not None and (baseline is None or last.usage.last_taken_at >= baseline):
            found[account] = Checkpoint(
                node_id, account, last.usage.counter_end, last.usage.last_taken_at)
        else:
            unexplained.add(account)
    if not unexplained:
        return found
    before = chunk.since - timedelta(microseconds=1)  # before every sample of the chunk
    for account in deps.checkpoints.get_checkpoints(source.source_id, node_id, unexplained):
        first = min((e.usage for e in deps.ledger.export(LedgerFilter(
                         source_id=source.source_id, account_id=account,
                         since=chunk.since, until=chunk.until))
                     if e.kind == "usage" and e.usage.node_id == node_id),
                    key=lambda usage: usage.first_taken_at, default=None)
        value = first.counter_start if first is not None else UNKNOWN_VALUE
        found[account] = Checkpoint(node_id, account, value, before)
    return found


def _compare(
    truth: dict[BucketKey, MinuteUsage],
    entries: list[LedgerEntry],
    account: str,
    rid: str,
) -> list[tuple[Difference, CorrectionSpec | None]]:
    """Per bucket of ``account``: the ledger's total (usage and corrections) against truth."""
    totals: dict[BucketKey, int] = defaultdict(int)
    included: dict[BucketKey, int] = defaultdict(int)
    corrections: dict[BucketKey, int] = defaultdict(int)
    usage_ids: dict[BucketKey, str] = {}
    for entry in entries:
        key = (entry.usage.node_id, entry.usage.account_id, entry.usage.minute)
        totals[key] += entry.usage.bytes
        included[key] += entry.included_bytes
        if entry.kind == "correction":
            corrections[key] += 1
        else:
            usage_ids[key] = entry.ledger_id
    keys = {k for k in truth if k[1] == account} | set(totals)
    out: list[tuple[Difference, CorrectionSpec | None]] = []
    for key in sorted(keys, key=lambda k: (k[2], k[0])):
        node_id, _, minute = key
        expected = truth[key].bytes if key in truth else 0
        billed = totals.get(key, 0)
        if expected == billed:
            continue
        reason = "missing" if key not in totals else "unexplained" if expected == 0 else (
            "different")
        difference = Difference(node_id, account, minute, billed, expected, reason)
        bucket = truth.get(key)
        usage = MinuteUsage(
            node_id=node_id, account_id=account, minute=minute, bytes=expected - billed,
            counter_start=bucket.counter_start if bucket else 0,
            counter_end=bucket.counter_end if bucket else 0,
            first_taken_at=bucket.first_taken_at if bucket else minute,
            last_taken_at=bucket.last_taken_at if bucket else minute,
            samples=bucket.samples if bucket else 0,
            resets=bucket.resets if bucket else 0,
        )
        spec = CorrectionSpec(usage=usage, target_bytes=expected, sequence=corrections[key],
                              included_before=included[key], corrects=usage_ids.get(key),
                              reason=reason, reconcile_id=rid)
        out.append((difference, spec))
    return out
