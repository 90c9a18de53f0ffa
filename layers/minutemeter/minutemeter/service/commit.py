"""Exactly-once commit of minute buckets: ledger entries plus included quota, no transactions.

The protocol (argued in docs/design.md), per (account, month):

1. Read the quota item (eventually consistent the first time, strongly on a retry). If it
   holds a pending reservation, finish it: write whatever of its entries is missing. A
   reservation carries everything its entries need.
2. Ask which of our buckets already have an entry; those are replays. The quota item's bucket
   marks (``domain/marks.py``) prove most new minutes new without asking.
3. Reserve: one conditional update (``version = expected``) that adds the included bytes of the
   new entries to ``used_bytes``, adds the entries to the month's statement and stores the plan
   as pending.
4. Write the entries (BatchWriteItem). The reservation guarantees no other plan holds these
   buckets, and entries are a pure function of their plan, so writing one twice (the owner and
   a runner finishing the plan) writes the same item. Finishing someone else's plan (step 1)
   uses conditional puts all the same, so the first write of an entry is never replaced.

Quota and entries therefore advance together: a crash after 3 leaves a pending plan that the
next writer of that account-month (at the latest the same source's next run, whose watermark did
not move) completes; a crash before 3 leaves nothing. No two plans ever hold the same bucket,
because a plan replaces its predecessor only once that predecessor is complete.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from minutemeter.domain.errors import ConcurrentUpdateError, QuotaConflictError
from minutemeter.domain.ids import batch_id, entry_ref, item_ref
from minutemeter.domain.marks import marks_after, may_exist
from minutemeter.domain.model import (
    BillingProfile,
    CorrectionSpec,
    LedgerEntry,
    MinuteUsage,
    QuotaPlan,
    QuotaState,
)
from minutemeter.domain.rating import included_total, plan_entries
from minutemeter.domain.statement import Statement
from minutemeter.domain.timeutil import month_of
from minutemeter.ports import LedgerStore

logger = logging.getLogger(__name__)

MAX_PLAN_ENTRIES = 100
MAX_RESERVE_ATTEMPTS = 25


@dataclass(frozen=True)
class CommitTotals:
    written: int = 0
    replayed: int = 0
    completed_for_others: int = 0

    def __add__(self, other: CommitTotals) -> CommitTotals:
        return CommitTotals(
            self.written + other.written,
            self.replayed + other.replayed,
            self.completed_for_others + other.completed_for_others,
        )


@dataclass(frozen=True)
class CommitContext:
    source_id: str
    run_id: str
    collected_at: datetime
    clock_bound_ms: Decimal | None = None


def commit_buckets(
    ledger: LedgerStore,
    buckets: Sequence[MinuteUsage | CorrectionSpec],
    profiles: Mapping[str, BillingProfile],
    default_profile: BillingProfile,
    context: CommitContext,
    *,
    concurrency: int,
    guard: Callable[[], None] | None = None,
) -> CommitTotals:
    """Commit ``buckets`` (or corrections) exactly once; accounts in parallel, each account's
    months in order.

    ``guard`` runs before each account (the run's lease check: it raises to stop the run).
    """
    by_account: dict[str, list[_Item]] = defaultdict(list)
    for bucket in buckets:
        by_account[_usage_of(bucket).account_id].append(bucket)

    def commit_account(account_id: str) -> CommitTotals:
        if guard is not None:
            guard()
        profile = profiles.get(account_id, default_profile)
        totals = CommitTotals()
        for group in _plan_groups(by_account[account_id]):
            totals += commit_group(ledger, group, profile, context)
        return totals

    totals = CommitTotals()
    if concurrency <= 1 or len(by_account) <= 1:
        for account_id in sorted(by_account):
            totals += commit_account(account_id)
        return totals
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="commit") as pool:
        for outcome in pool.map(commit_account, sorted(by_account)):
            totals += outcome
    return totals


def commit_group(
    ledger: LedgerStore,
    items: Sequence[MinuteUsage | CorrectionSpec],
    profile: BillingProfile,
    context: CommitContext,
) -> CommitTotals:
    """Run the protocol for buckets (or corrections) of one account and one month (at most
    MAX_PLAN_ENTRIES)."""
    first = _usage_of(items[0])
    account_id, month = first.account_id, month_of(first.minute)
    for attempt in range(MAX_RESERVE_ATTEMPTS):
        # The first read may be stale (half the read units): a stale item has an older version,
        # so the reservation fails and the retry reads strongly consistently.
        quota = ledger.get_quota(account_id, month, consistent=attempt > 0)
        completed = finish_pending(ledger, quota.pending) if quota.pending else 0
        maybe = [item_ref(context.source_id, i) for i in items
                 if may_exist(quota.marks, context.source_id, i)]
        existing = ledger.existing_buckets(maybe) if maybe else set()
        new = [i for i in items if item_ref(context.source_id, i) not in existing]
        replayed = len(items) - len(new)
        if not new:
            return CommitTotals(written=0, replayed=replayed, completed_for_others=completed)
        corrections = tuple(i for i in new if isinstance(i, CorrectionSpec))
        usages = tuple(i for i in new if isinstance(i, MinuteUsage))
        plan = QuotaPlan(
            batch_id=batch_id(
                context.run_id, account_id, month, _usage_of(new[0]).minute, quota.version
            ),
            source_id=context.source_id,
            account_id=account_id,
            month=month,
            used_before=quota.used_bytes,
            profile=profile,
            run_id=context.run_id,
            collected_at=context.collected_at,
            usages=usages,
            clock_bound_ms=context.clock_bound_ms,
            corrections=corrections,
        )
        entries = plan_entries(plan)
        try:
            ledger.reserve_quota(
                plan,
                expected_version=quota.version,
                new_used=quota.used_bytes + included_total(plan),
                marks=marks_after(quota.marks, plan),
                statement=statement_after(quota, entries),
            )
        except QuotaConflictError:
            continue
        written = ledger.write_reserved(entries)
        return CommitTotals(written=written, replayed=replayed, completed_for_others=completed)
    raise ConcurrentUpdateError(
        f"quota of account {account_id} month {month} kept changing; "
        f"gave up after {MAX_RESERVE_ATTEMPTS} attempts (nothing was double-billed)"
    )


def statement_after(quota: QuotaState, entries: Sequence[LedgerEntry]) -> Statement | None:
    """The statement once ``entries`` are added: it moves in the reservation that plans them.
    An item stored before statements existed keeps none (its earlier entries were never
    summed into one); ``audit`` and ``usage`` sum the ledger for it."""
    if quota.statement is not None:
        return quota.statement.plus(entries)
    if quota.version == 0:
        return Statement(quota.account_id, quota.month).plus(entries)
    return None


def finish_pending(ledger: LedgerStore, plan: QuotaPlan) -> int:
    """Write the entries of a pending reservation that are still missing; return how many."""
    entries = plan_entries(plan)
    refs = {entry_ref(e): e for e in entries}
    # Eventually consistent is enough: an entry it misses is written with a conditional put,
    # which leaves an entry that exists as it is.
    existing = ledger.existing_buckets(list(refs), consistent=False)
    missing = [entry for ref, entry in refs.items() if ref not in existing]
    if not missing:
        return 0
    logger.warning(
        "finishing an interrupted reservation",
        extra={"batch_id": plan.batch_id, "source_id": plan.source_id, "missing": len(missing)},
    )
    return ledger.put_entries(missing).written


def _plan_groups(usages: Sequence[_Item]) -> list[list[_Item]]:
    by_month: dict[str, list[_Item]] = defaultdict(list)
    for item in sorted(usages, key=lambda i: (_usage_of(i).minute, _usage_of(i).node_id)):
        by_month[month_of(_usage_of(item).minute)].append(item)
    groups: list[list[_Item]] = []
    for month in sorted(by_month):
        items = by_month[month]
        groups.extend(
            items[i : i + MAX_PLAN_ENTRIES] for i in range(0, len(items), MAX_PLAN_ENTRIES)
        )
    return groups


_Item = MinuteUsage | CorrectionSpec


def _usage_of(item: _Item) -> MinuteUsage:
    return item.usage if isinstance(item, CorrectionSpec) else item
