"""Reconcile: recompute a billed window from the exporter, show what differs, correct it.

The ledger is append-only: a difference becomes a correcting entry (its own deterministic id,
a reason, the id of the entry it corrects) that moves the quota through the same reservation
as usage. A window is worked in chunks; a confirmed reconcile records how far it got and
resumes there when asked again with the same window.

This module runs a window: it checks the request, takes the source's lease, works the chunks
within the time budget, records progress and the result. What one chunk does (recompute,
compare, the evidence rule, the corrections) is ``service/reconcile_chunk.py``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from minutemeter.domain.clock_guard import takeover_margin_seconds
from minutemeter.domain.errors import InputError, LeaseHeldError, MinutemeterError
from minutemeter.domain.ids import LEDGER_NAMESPACE
from minutemeter.domain.model import SourceConfig, SyncState, Window
from minutemeter.domain.timeutil import (
    floor_minute,
    format_instant,
    format_second,
    is_minute_aligned,
)
from minutemeter.domain.window import split_window
from minutemeter.ports import Budget
from minutemeter.service.deps import BillingDeps, time_for
from minutemeter.service.lease import LeaseKeeper
from minutemeter.service.reconcile_chunk import Difference, NoEvidenceError, reconcile_chunk

logger = logging.getLogger(__name__)

MAX_WINDOW = timedelta(days=31)
CHUNK = timedelta(hours=1)
LEASE_WAIT_SECONDS = 20.0

Progress = Callable[[int, int], None]  # (chunks done, chunks in all)


@dataclass(frozen=True)
class ReconcileRequest:
    """A window to check; ``requested_by`` is who asked (the IAM principal, or the CLI user)."""

    source_id: str
    since: datetime
    until: datetime
    dry_run: bool
    requested_by: str


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
            totals = reconcile_chunk(
                deps, source, state, chunk, now, reconcile_id=rid, dry_run=request.dry_run,
                differences=result.differences, lease=lease, budget=budget,
            )
            result.corrections_written += totals.written
            result.corrections_replayed += totals.replayed
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
