"""The collect-and-rate use case: one run of one source, exactly what the scheduled Lambda does."""

from __future__ import annotations

import json
import logging
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from minutemeter.domain.clock_guard import (
    ClockGuardDecision,
    ClockGuardPolicy,
    decide_clock_guard,
    takeover_margin_seconds,
)
from minutemeter.domain.errors import (
    DeadlineError,
    LeaseHeldError,
    LeaseLostError,
    MinutemeterError,
    SourceNotFoundError,
)
from minutemeter.domain.exporter_errors import BodyTooLargeError, WindowNotReadyError
from minutemeter.domain.health import HealthStatus, assess, record_run
from minutemeter.domain.identity import identity_change
from minutemeter.domain.ids import content_digest
from minutemeter.domain.model import (
    JobResult,
    JobStatus,
    Quarantined,
    SourceConfig,
    SyncState,
    Window,
)
from minutemeter.domain.registry import SourceUnreadableError
from minutemeter.domain.usage import UsageAccumulator, UsageResult
from minutemeter.domain.validation import MAX_QUARANTINE_RECORDS, SampleRules
from minutemeter.domain.window import plan_window, split_window
from minutemeter.ports import Budget
from minutemeter.service.commit import CommitContext, CommitTotals, commit_buckets
from minutemeter.service.deps import BillingDeps, fetch_time_left, time_for
from minutemeter.service.fetch import WindowFetch
from minutemeter.service.lease import LeaseKeeper
from minutemeter.settings import Settings

logger = logging.getLogger(__name__)

CHUNK = timedelta(minutes=15)


def collect_source(deps: BillingDeps, source_id: str, budget: Budget | None = None) -> JobResult:
    """Advance ``source_id`` by at most one window and record the job result.

    Works chunk by chunk (``CHUNK`` minutes); each chunk is fetched, validated, diffed, committed
    and then the watermark moves to its end. Before a chunk, and between pages, the run stops if
    the budget would not cover it with ``settings.deadline_margin_seconds`` to spare. Every
    error is recorded in the job result and the source's sync state; none moves the watermark.
    """
    now = deps.clock.now()
    job = JobResult(
        job_id=deps.clock.new_run_id(), job="collect", source_id=source_id, started_at=now
    )
    try:
        source = deps.sources.get_source(source_id)
    except SourceNotFoundError as exc:  # nothing to record it under: no state for ghosts
        _fail(job, exc)
        job.finished_at = deps.clock.now()
        return job
    except SourceUnreadableError as exc:  # recorded: `status` shows why and how to repair it
        _fail(job, exc)
        _finish(deps, job, None)
        return job
    if not source.enabled:
        return _skip(deps, job, f"source {source_id!r} is disabled")
    verdict = deps.verdicts.get_clock_verdict()
    clock_guard = decide_clock_guard(source, verdict, now, _clock_guard_policy(deps.settings))
    job.clock_guard = clock_guard.to_json()
    if clock_guard.action != "none":
        logger.warning("clock guard", extra={"source_id": source_id, **clock_guard.to_json()})
    if clock_guard.pause:
        return _skip(deps, job, f"clock guard paused the source: {clock_guard.reason}")
    lease = LeaseKeeper(
        deps.sync,
        deps.clock,
        source_id,
        holder=job.job_id,
        lease_seconds=source.lease_seconds,
        margin_seconds=takeover_margin_seconds(deps.settings.lease_margin_seconds, verdict),
        heartbeat=deps.lease_heartbeat,
        budget=budget,
    )
    try:
        lease.acquire()
    except LeaseHeldError as exc:
        return _skip(deps, job, str(exc))
    state: SyncState | None = None
    try:
        job.lease_token = lease.token
        state = deps.sync.get_state(source_id)
        _run(deps, source, state, now, budget, job, lease, clock_guard)
    except MinutemeterError as exc:
        _fail(job, exc)
    except Exception as exc:  # an unexpected failure is still recorded, then re-raised
        _fail(job, exc)
        _finish(deps, job, lease.token, _progress(source, state, job))
        lease.release()
        raise
    _finish(deps, job, lease.token, _progress(source, state, job))
    lease.release()
    return job


def _progress(source: SourceConfig, state: SyncState | None, job: JobResult) -> _Progress | None:
    """What the sync state knew before the run, for health and lag (None: never read)."""
    if state is None:
        return None
    return _Progress(state, job.completed_until or state.last_completed_until or source.start)


@dataclass(frozen=True)
class _Progress:
    before: SyncState
    watermark: datetime


def _clock_guard_policy(settings: Settings) -> ClockGuardPolicy:
    return ClockGuardPolicy(
        required=settings.clock_guard_required,
        max_age=timedelta(seconds=settings.clock_verdict_max_age_seconds),
        fallback_error=timedelta(seconds=settings.clock_fallback_error_seconds),
    )


def _skip(deps: BillingDeps, job: JobResult, why: str) -> JobResult:
    """Not a failure: logged with the reason (the lease holder), kept in the job history."""
    job.status = JobStatus.SKIPPED
    job.notes.append(why)
    logger.info("collector run skipped", extra={"source_id": job.source_id, "reason": why})
    _finish(deps, job, None)
    return job


def _run(
    deps: BillingDeps,
    source: SourceConfig,
    state: SyncState,
    now: datetime,
    budget: Budget | None,
    job: JobResult,
    lease: LeaseKeeper,
    clock_guard: ClockGuardDecision,
) -> None:
    window = plan_window(source, state, now, clock_guard.extra_lag)
    job.window_since, job.window_until = window.since, window.until
    job.completed_until = state.last_completed_until
    last_chunk_seconds = 0.0
    pending = deque(split_window(window, CHUNK))
    while pending:
        chunk = pending.popleft()
        if not time_for(deps, budget, 1.5 * last_chunk_seconds):
            job.notes.append(f"stopped before {chunk.since.isoformat()} to respect the deadline")
            break
        started = deps.clock.monotonic()
        try:
            lease.check()
            state = _collect_chunk(
                deps, source, state, chunk, now, budget, job, lease, clock_guard
            )
        except BodyTooLargeError as exc:
            halves = halve_window(chunk)
            if halves is None:
                raise  # one minute is still too large: the message says what to set
            job.notes.append(
                f"exporter body over {exc.limit_bytes} bytes for [{chunk.since.isoformat()}, "
                f"{chunk.until.isoformat()}) without paging: fetching it in halves"
            )
            logger.warning("exporter page too large: halving the chunk",
                           extra={"source_id": source.source_id, "since": str(chunk.since),
                                  "until": str(chunk.until)})
            pending.extendleft(reversed(halves))
            continue
        except DeadlineError as exc:
            if job.completed_until is None or job.completed_until <= window.since:
                raise
            job.notes.append(str(exc))
            break
        except WindowNotReadyError as exc:  # not a failure: billed once the source has it
            job.notes.append(str(exc))
            break
        last_chunk_seconds = deps.clock.monotonic() - started
        job.completed_until = state.last_completed_until
        if state.last_completed_until is not None and state.last_completed_until > chunk.until:
            job.notes.append("another runner advanced the watermark further; stopping")
            break
    caught_up_at = plan_window(source, state, now, clock_guard.extra_lag).until
    job.caught_up = (state.last_completed_until is not None and (
        state.last_completed_until >= caught_up_at
    )) or window.empty
    job.status = JobStatus.PARTIAL if job.quarantined_samples else JobStatus.OK


def _collect_chunk(
    deps: BillingDeps,
    source: SourceConfig,
    state: SyncState,
    chunk: Window,
    now: datetime,
    budget: Budget | None,
    job: JobResult,
    lease: LeaseKeeper,
    clock_guard: ClockGuardDecision,
) -> SyncState:
    """Fetch, validate, diff and commit one chunk; pages stream through the usage accumulator,
    so memory holds a page, one checkpoint per account and the chunk's minute buckets."""
    settings = deps.settings
    tolerance = source.clock_tolerance_seconds or settings.clock_tolerance_seconds
    rules = SampleRules(
        window=chunk,
        now=now,
        tolerance=timedelta(seconds=tolerance),
        max_counter=settings.max_counter_bytes,
    )

    def before_page() -> None:
        if not time_for(deps, budget, 0.0):
            raise DeadlineError(f"deadline near while fetching [{chunk.since}, {chunk.until})")
        lease.check()

    change = identity_change(source, state)
    if change is not None:
        logger.warning("counter identity changed: fresh baseline",
                       extra={"source_id": source.source_id, "change": change})
    fetch = WindowFetch(deps.readers, source, state, chunk, rules, before_page,
                        time_left=lambda: fetch_time_left(deps, budget))
    fetch.validated.max_records = max(0, MAX_QUARANTINE_RECORDS - job.quarantined_samples)
    usage_of: UsageAccumulator | None = None
    for snapshots in fetch:
        node_id = fetch.node_id or ""
        if usage_of is None:
            usage_of = UsageAccumulator(
                node_id=node_id,
                baseline_pending=state.baseline_taken_at is None or change is not None,
                reset_policy=source.reset_policy,
                valid_since=state.baseline_taken_at,
            )
        named = {s.account_id for snap in snapshots for s in snap.samples}
        named.update(a for snap in snapshots for a in snap.unreadable_accounts)
        unloaded = usage_of.unloaded(named)
        if unloaded:
            usage_of.load(deps.checkpoints.get_checkpoints(source.source_id, node_id, unloaded),
                          looked_up=unloaded)
        for snapshot in snapshots:
            usage_of.add(snapshot)
    node_id = fetch.node_id or ""
    usage = usage_of.finish() if usage_of is not None else UsageResult()
    validated = fetch.validated
    if change is not None:
        job.notes.append(
            f"{change}: its counters start from a fresh baseline"
            + ("" if usage.baseline_taken_at else " (no snapshot yet in this chunk)")
        )
    collected_at = deps.clock.now()
    expires_at = collected_at + timedelta(days=settings.record_ttl_days)
    quarantined = list(validated.quarantined)
    if validated.overflow:
        quarantined.append(overflow_record(validated.overflow, chunk, job.job_id))
    deps.records.put_records(
        source.source_id,
        quarantined=quarantined,
        resets=usage.resets,
        run_id=job.job_id,
        at=collected_at,
        expires_at=expires_at,
    )
    totals: CommitTotals = commit_buckets(
        deps.ledger,
        usage.buckets,
        deps.profiles.get_profiles({b.account_id for b in usage.buckets}),
        settings.default_profile,
        CommitContext(source.source_id, job.job_id, collected_at, clock_guard.error_ms),
        concurrency=settings.commit_concurrency,
        guard=lease.check,
    )
    lease.check()
    deps.checkpoints.advance_checkpoints(
        source.source_id, usage.checkpoints.values(), fence=lease.token
    )
    new_state = deps.sync.commit_progress(
        source.source_id,
        until=chunk.until,
        node_id=node_id,
        env=fetch.env,
        baseline_taken_at=usage.baseline_taken_at,
        rebaseline=change is not None,
        at=collected_at,
        fence=lease.token,
    )
    job.pages += fetch.pages
    job.processed_samples += usage.processed_samples
    job.skipped_samples += usage.skipped_samples
    job.quarantined_samples += validated.quarantined_count
    job.counter_resets += len(usage.resets)
    job.written_minutes += totals.written
    job.replayed_minutes += totals.replayed
    logger.info(
        "chunk committed",
        extra={
            "source_id": source.source_id,
            "since": chunk.since.isoformat(),
            "until": chunk.until.isoformat(),
            "written": totals.written,
            "replayed": totals.replayed,
            "quarantined": validated.quarantined_count,
        },
    )
    return new_state


def overflow_record(overflow: dict[str, int], chunk: Window, run_id: str) -> Quarantined:
    """One record for the quarantined samples past the per-run cap, counted per reason."""
    counts = json.dumps(dict(sorted(overflow.items())), separators=(",", ":"))
    return Quarantined(
        reason="quarantine_overflow",
        taken_at=chunk.since.isoformat(),
        account_id=None,
        raw=f"{sum(overflow.values())} more quarantined samples not kept one by one: {counts}",
        digest=content_digest("quarantine_overflow", run_id, chunk.since.isoformat()),
    )


def halve_window(window: Window) -> tuple[Window, Window] | None:
    """``window`` split at a whole minute near its middle, or ``None`` for one minute."""
    minutes = int((window.until - window.since) / timedelta(minutes=1))
    if minutes <= 1:
        return None
    middle = window.since + timedelta(minutes=minutes // 2)
    return Window(window.since, middle), Window(middle, window.until)


def _fail(job: JobResult, exc: BaseException) -> None:
    job.status = JobStatus.ERROR
    job.error = str(exc) or type(exc).__name__
    job.error_type = type(exc).__name__


def _finish(
    deps: BillingDeps, job: JobResult, fence: int | None, progress: _Progress | None = None
) -> None:
    job.finished_at = deps.clock.now()
    expires_at = job.finished_at + timedelta(days=deps.settings.record_ttl_days)
    buckets = None
    if progress is not None:
        job.lag_seconds = int((job.finished_at - progress.watermark).total_seconds())
        buckets = record_run(
            progress.before.health_buckets, job.finished_at, job.status is JobStatus.ERROR
        )
        previous = progress.before.health
        health = assess(
            buckets, job.finished_at, HealthStatus(str(previous["status"])) if previous else None
        )
        job.health = health.to_json()
        if health.recovered:
            logger.info("source recovered", extra={"source_id": job.source_id, **job.health})
    try:
        deps.sync.record_result(job, expires_at=expires_at, fence=fence, health_buckets=buckets)
    except LeaseLostError:
        logger.warning("lease lost: job kept in the history, sync state left to the new holder",
                       extra={"job_id": job.job_id, "source_id": job.source_id})
    except Exception:
        logger.exception("could not record the job result", extra={"job_id": job.job_id})
        if job.status is not JobStatus.ERROR:
            raise
