"""Reconcile: recompute a billed window from the exporter, show what differs, correct it.

The ledger is append-only: a difference becomes a correcting entry (its own deterministic id,
a reason, the id of the entry it corrects) that moves the quota through the same reservation
as usage. A window is worked in chunks; a confirmed reconcile records how far it got and
resumes there when asked again with the same window.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from minutemeter.domain.clock_guard import takeover_margin_seconds
from minutemeter.domain.errors import InputError, LeaseHeldError, MinutemeterError
from minutemeter.domain.ids import LEDGER_NAMESPACE
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
from minutemeter.domain.timeutil import (
    floor_minute,
    format_instant,
    format_second,
    is_minute_aligned,
)
from minutemeter.domain.usage import UsageAccumulator, UsageResult
from minutemeter.domain.validation import SampleRules
from minutemeter.domain.window import split_window
from minutemeter.ports import Budget, LedgerFilter
from minutemeter.service.collect import BillingDeps, fetch_time_left, time_for
from minutemeter.service.commit import CommitContext, commit_buckets
from minutemeter.service.fetch import WindowFetch
from minutemeter.service.lease import LeaseKeeper

logger = logging.getLogger(__name__)


class NoEvidenceError(InputError):
    """A confirm would take back billed usage for minutes the exporter returned no data for
    (shared/spec/exporter-api.md: no data is not zero usage): nothing of the chunk is written."""

MAX_WINDOW = timedelta(days=31)
CHUNK = timedelta(hours=1)
LOOKBACK = timedelta(minutes=10)  # where to find each counter's value at a chunk's start
LEASE_WAIT_SECONDS = 20.0

Progress = Callable[[int, int], None]  # (chunks done, chunks in all)
BucketKey = tuple[str, str, datetime]  # (node, account, minute)


@dataclass(frozen=True)
class ReconcileRequest:
    """A window to check; ``requested_by`` is who asked (the IAM principal, or the CLI user)."""

    source_id: str
    since: datetime
    until: datetime
    dry_run: bool
    requested_by: str


@dataclass(frozen=True)
class Difference:
    node_id: str
    account_id: str
    minute: datetime
    ledger_bytes: int
    exporter_bytes: int
    reason: str  # missing | different | unexplained

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


@dataclass
class ReconcileResult:
    reconcile_id: str
    run_id: str
    request: ReconcileRequest
    started_at: datetime
    status: str = "ok"  # ok | differences | corrected | partial | busy | error
    differences: list[Difference] = field(default_factory=list)
    corrections_written: int = 0
    corrections_replayed: int = 0
    completed_until: datetime | None = None
    chunks_done: int = 0
    chunks_total: int = 0
    finished_at: datetime | None = None
    error: str | None = None
    error_type: str | None = None

    def to_json(self, max_differences: int = 1000) -> dict[str, object]:
        return {
            "reconcile_id": self.reconcile_id,
            "run_id": self.run_id,
            "source_id": self.request.source_id,
            "since": format_second(self.request.since),
            "until": format_second(self.request.until),
            "dry_run": self.request.dry_run,
            "requested_by": self.request.requested_by,
            "started_at": format_instant(self.started_at),
            "finished_at": format_instant(self.finished_at) if self.finished_at else None,
            "status": self.status,
            "difference_count": len(self.differences),
            "unverifiable_count": sum(d.reason == "no_data" for d in self.differences),
            "differences": [d.to_json() for d in self.differences[:max_differences]],
            "corrections_written": self.corrections_written,
            "corrections_replayed": self.corrections_replayed,
            "completed_until": format_second(self.completed_until)
            if self.completed_until else None,
            "chunks_done": self.chunks_done,
            "chunks_total": self.chunks_total,
            "error": self.error,
            "error_type": self.error_type,
        }


def reconcile_id(request: ReconcileRequest) -> str:
    """Confirmed reconciles of one window share an id (that is how they resume); dry runs are
    told apart by when they started."""
    key = f"{request.source_id}/{format_second(request.since)}/{format_second(request.until)}"
    return str(uuid.uuid5(LEDGER_NAMESPACE, f"reconcile/{key}"))


def check_request(source: SourceConfig, state: SyncState, request: ReconcileRequest) -> None:
    """Raise :class:`InputError` unless the window can be reconciled."""
    if not (is_minute_aligned(request.since) and is_minute_aligned(request.until)):
        raise InputError("since and until must be whole minutes (RFC 3339, seconds :00)")
    if request.since >= request.until:
        raise InputError("since must be before until")
    if request.until - request.since > MAX_WINDOW:
        raise InputError(f"a window is at most {MAX_WINDOW.days} days")
    if request.since < source.start:
        raise InputError(f"since is before the source's start {format_second(source.start)}")
    baseline = state.baseline_taken_at
    if baseline is not None and request.since < floor_minute(baseline):
        raise InputError(
            f"since is before the source's baseline {format_second(baseline)} (the first "
            "counters read from its current node and env): nothing before it was billed from "
            "these counters"
        )
    mark = state.last_completed_until
    if mark is None or request.until > mark:
        raise InputError(
            "until is beyond what the collector has billed "
            f"(watermark {format_second(mark) if mark else 'none'}); reconcile billed minutes"
        )


def reconcile(
    deps: BillingDeps,
    request: ReconcileRequest,
    *,
    budget: Budget | None = None,
    progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ReconcileResult:
    """Compare (and unless ``dry_run``, correct) ``request``'s window; record who and what.

    Raises :class:`InputError`/``SourceNotFoundError`` for a request that cannot run; every
    other failure ends in a result with status ``error`` (or ``partial`` when some chunks
    were done), recorded like the rest.
    """
    source = deps.sources.get_source(request.source_id)
    state = deps.sync.get_state(request.source_id)
    check_request(source, state, request)
    now = deps.clock.now()
    run_id = deps.clock.new_run_id()
    rid = reconcile_id(request) if not request.dry_run else f"dry-{run_id}"
    result = ReconcileResult(reconcile_id=rid, run_id=run_id, request=request, started_at=now)
    window = Window(request.since, request.until)
    if not request.dry_run:
        done = deps.reconciles.get_reconcile_progress(request.source_id, rid)
        if done is not None and window.since < done < window.until:  # an unfinished confirm
            logger.info("resuming reconcile", extra={"reconcile_id": rid, "from": str(done)})
            window = Window(done, window.until)
            result.completed_until = done
    chunks = list(split_window(window, CHUNK))
    result.chunks_total = len(chunks)
    lease: LeaseKeeper | None = None
    busy: LeaseHeldError | None = None
    refused: NoEvidenceError | None = None
    try:
        if not request.dry_run:
            lease = _take_lease(deps, source, rid, sleep, budget)
        last_chunk_seconds = 0.0
        for chunk in chunks:
            if not time_for(deps, budget, 1.5 * last_chunk_seconds):
                break  # the next call resumes here (confirm) or the caller narrows the window
            if lease is not None:
                lease.check()
            started = deps.clock.monotonic()
            _reconcile_chunk(deps, source, state, chunk, now, result, lease, budget)
            last_chunk_seconds = deps.clock.monotonic() - started
            result.chunks_done += 1
            result.completed_until = chunk.until
            if not request.dry_run:
                deps.reconciles.put_reconcile_progress(request.source_id, rid, chunk.until)
            if progress is not None:
                progress(result.chunks_done, result.chunks_total)
        result.status = _status(result)
    except LeaseHeldError as exc:  # recorded like any run, then raised: the caller says "busy"
        result.status, busy = "busy", exc
        result.error, result.error_type = str(exc), type(exc).__name__
    except NoEvidenceError as exc:  # recorded, then raised: a window that cannot be reconciled
        result.status, refused = "refused", exc
        result.error, result.error_type = str(exc), type(exc).__name__
    except MinutemeterError as exc:
        result.status = "partial" if result.chunks_done else "error"
        result.error, result.error_type = str(exc), type(exc).__name__
    finally:
        if lease is not None:
            lease.release()
        result.finished_at = deps.clock.now()
        try:
            deps.reconciles.record_reconcile(result.to_json(max_differences=200))
        except MinutemeterError:
            logger.exception("could not record the reconcile", extra={"reconcile_id": rid})
    if busy is not None:
        raise busy
    if refused is not None:
        raise refused
    return result


def _status(result: ReconcileResult) -> str:
    if result.chunks_done < result.chunks_total:
        return "partial"
    if not result.differences:
        return "ok"
    return "differences" if result.request.dry_run else "corrected"


def _take_lease(
    deps: BillingDeps, source: SourceConfig, holder: str, sleep: Callable[[float], None],
    budget: Budget | None,
) -> LeaseKeeper:
    """The source's lease, queueing behind a running collector: one try a second for
    LEASE_WAIT_SECONDS (counted in tries, so an injected ``sleep`` makes it instant)."""
    margin = takeover_margin_seconds(
        deps.settings.lease_margin_seconds, deps.verdicts.get_clock_verdict()
    )
    for attempt in range(int(LEASE_WAIT_SECONDS) + 1):
        lease = LeaseKeeper(deps.sync, deps.clock, source.source_id, holder=f"reconcile-{holder}",
                            lease_seconds=source.lease_seconds, margin_seconds=margin,
                            heartbeat=deps.lease_heartbeat, budget=budget)
        try:
            lease.acquire()
            return lease
        except LeaseHeldError:
            if attempt == int(LEASE_WAIT_SECONDS):
                raise
            sleep(1.0)
    raise AssertionError("unreachable")


def _reconcile_chunk(
    deps: BillingDeps,
    source: SourceConfig,
    state: SyncState,
    chunk: Window,
    now: datetime,
    result: ReconcileResult,
    lease: LeaseKeeper | None,
    budget: Budget | None,
) -> None:
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
        for difference, spec in _compare(truth, entries, account, result.reconcile_id):
            if difference.exporter_bytes < difference.ledger_bytes and (
                last_seen is None or last_seen < difference.minute
            ):  # nothing read at or after the minute: no evidence that less was used
                difference = replace(difference, reason="no_data")
                unverifiable.append(difference)
                spec = None
            result.differences.append(difference)
            if spec is not None:
                corrections.append(spec)
    if unverifiable and not result.request.dry_run:
        first = unverifiable[0]
        raise NoEvidenceError(
            f"the exporter returned no samples of account {first.account_id} at or after "
            f"{format_second(first.minute)} (billed {first.ledger_bytes} B there), and "
            f"{len(unverifiable) - 1} more such minute(s) in "
            f"[{format_second(chunk.since)}, {format_second(chunk.until)}): no data is not "
            "zero usage, so nothing was taken back; reconcile a window the exporter still has"
        )
    if result.request.dry_run or not corrections:
        return
    # Accounts only reconcile has billed are remembered before their corrections are written,
    # so a later reconcile of the window still finds them (the collector's are in checkpoints).
    deps.reconciles.add_reconciled_accounts(
        source.source_id, {c.usage.account_id for c in corrections} - seen
    )
    totals = commit_buckets(
        deps.ledger,
        corrections,
        deps.profiles.get_profiles({c.usage.account_id for c in corrections}),
        deps.settings.default_profile,
        CommitContext(source.source_id, result.reconcile_id, now),
        concurrency=deps.settings.commit_concurrency,
        guard=lease.check if lease is not None else None,
    )
    result.corrections_written += totals.written
    result.corrections_replayed += totals.replayed


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
