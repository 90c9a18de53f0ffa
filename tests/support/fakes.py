"""In-memory fakes of the store ports, with the same conditional semantics as the DynamoDB
adapters. The contract suite (tests/functional/test_store_contract.py) runs against both."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from minutemeter.domain.delivery import SinkConfig
from minutemeter.domain.errors import (
    LeaseHeldError,
    LeaseLostError,
    QuotaConflictError,
    SourceNotFoundError,
    UnknownSinkError,
)
from minutemeter.domain.ids import entry_ref
from minutemeter.domain.lease import lease_until, may_take_over
from minutemeter.domain.marks import Marks
from minutemeter.domain.model import (
    BillingProfile,
    BucketRef,
    Checkpoint,
    ClockVerdict,
    JobResult,
    JobStatus,
    LedgerEntry,
    Quarantined,
    QuotaPlan,
    QuotaState,
    ResetEvent,
    SourceConfig,
    SyncState,
)
from minutemeter.domain.statement import Statement
from minutemeter.domain.timeutil import format_second, month_of
from minutemeter.ports import DeliveryRecord, LeaseGrant, LedgerFilter, PutOutcome, StateStores
from minutemeter.presenters import job_to_dict


class FakeLedgerStore:
    def __init__(self) -> None:
        self.entries: dict[BucketRef, LedgerEntry] = {}
        self.quotas: dict[tuple[str, str], QuotaState] = {}
        self.writes = 0
        self._lock = threading.Lock()

    def get_quota(self, account_id: str, month: str, *, consistent: bool = True) -> QuotaState:
        with self._lock:
            return self.quotas.get((account_id, month), QuotaState(account_id, month))

    def reserve_quota(
        self,
        plan: QuotaPlan,
        *,
        expected_version: int,
        new_used: int,
        marks: Marks | None = None,
        statement: Statement | None = None,
    ) -> None:
        with self._lock:
            key = (plan.account_id, plan.month)
            current = self.quotas.get(key, QuotaState(plan.account_id, plan.month, marks=None))
            if current.version != expected_version:
                raise QuotaConflictError(f"version {current.version} != {expected_version}")
            untracked = marks is None and statement is None  # as code before them wrote it:
            # the adapter then no longer trusts the marks or statement the item still holds
            self.quotas[key] = QuotaState(
                plan.account_id, plan.month, new_used, expected_version + 1, plan,
                marks=None if untracked else current.marks if marks is None else dict(marks),
                statement=(None if untracked else
                           current.statement if statement is None else statement),
            )
            self.writes += 1

    def get_quotas(self, account_ids: Iterable[str], month: str) -> Iterator[QuotaState]:
        with self._lock:
            found = [self.quotas[(a, month)] for a in account_ids if (a, month) in self.quotas]
        yield from found

    def month_accounts(self, month: str) -> Iterator[str]:
        with self._lock:
            accounts = sorted(a for a, m in self.quotas if m == month)
        yield from accounts

    def month_entries(self, source_id: str, account_id: str, month: str) -> Iterator[LedgerEntry]:
        with self._lock:
            entries = [e for e in self.entries.values()
                       if e.source_id == source_id and e.usage.account_id == account_id
                       and month_of(e.usage.minute) == month]
        yield from sorted(entries, key=lambda e: (e.usage.minute, entry_ref(e).variant))

    def partition_entries(
        self, source_id: str, account_id: str, *, since: datetime, until: datetime,
        after: str | None = None,
    ) -> Iterator[tuple[str, LedgerEntry]]:
        with self._lock:
            entries = [e for e in self.entries.values()
                       if e.source_id == source_id and e.usage.account_id == account_id
                       and since <= e.usage.minute < until]
        keyed = sorted(((_entry_sort_key(e), e) for e in entries), key=lambda pair: pair[0])
        yield from ((k, e) for k, e in keyed if after is None or k > after)

    def existing_buckets(
        self, refs: Sequence[BucketRef], *, consistent: bool = True
    ) -> set[BucketRef]:
        with self._lock:
            return {r for r in refs if r in self.entries}

    def put_entries(self, entries: Sequence[LedgerEntry]) -> PutOutcome:
        written = existed = 0
        for entry in entries:
            ref = entry_ref(entry)
            with self._lock:
                self.writes += 1
                if ref in self.entries:
                    existed += 1
                else:
                    self.entries[ref] = entry
                    written += 1
        return PutOutcome(written, existed)

    def write_reserved(self, entries: Sequence[LedgerEntry]) -> int:
        for entry in entries:
            ref = entry_ref(entry)
            with self._lock:
                self.writes += 1
                previous = self.entries.get(ref)
                # An overwrite must be a no-op; anything else breaks the design's premise.
                assert previous is None or previous == entry, f"entry rewritten: {ref}"
                self.entries[ref] = entry
        return len(entries)

    def last_usage_before(
        self, source_id: str, node_id: str, account_id: str, before: datetime
    ) -> LedgerEntry | None:
        with self._lock:
            candidates = [
                e for e in self.entries.values()
                if e.kind == "usage" and e.source_id == source_id and e.usage.node_id == node_id
                and e.usage.account_id == account_id and e.usage.minute < before
            ]
        return max(candidates, key=lambda e: e.usage.minute, default=None)

    def export(self, selection: LedgerFilter) -> Iterator[LedgerEntry]:
        with self._lock:
            entries = list(self.entries.values())
        for entry in sorted(entries, key=lambda e: (e.source_id, e.usage.account_id,
                                                    e.usage.minute, entry_ref(e).variant)):
            if selection.source_id and entry.source_id != selection.source_id:
                continue
            if selection.account_id and entry.usage.account_id != selection.account_id:
                continue
            if selection.since and entry.usage.minute < selection.since:
                continue
            if selection.until and entry.usage.minute >= selection.until:
                continue
            yield entry


def _entry_sort_key(entry: LedgerEntry) -> str:
    ref = entry_ref(entry)
    return f"{format_second(ref.minute)}#{ref.node_id}" + (f"#{ref.variant}" if ref.variant
                                                            else "")


class FakeSourceStore:
    """:class:`minutemeter.ports.SourceStore` in memory (it never holds an unreadable record)."""

    def __init__(self) -> None:
        self.sources: dict[str, SourceConfig] = {}

    def put_source(self, source: SourceConfig) -> None:
        self.sources[source.source_id] = source

    def get_source(self, source_id: str) -> SourceConfig:
        if source_id not in self.sources:
            raise SourceNotFoundError(source_id)
        return self.sources[source_id]

    def list_sources(self) -> list[SourceConfig]:
        return [self.sources[k] for k in sorted(self.sources)]


class FakeSyncStore:
    """:class:`minutemeter.ports.SyncStore` in memory. As in the DynamoDB adapter, state, lease
    and token are one record per source: ``lock`` and :meth:`check_fence` are shared with the
    :class:`FakeCheckpointStore` that fences on this store's tokens."""

    def __init__(self) -> None:
        self.states: dict[str, SyncState] = {}
        self.jobs: dict[str, dict[str, dict[str, Any]]] = {}
        self.leases: dict[str, LeaseGrant] = {}
        self.tokens: dict[str, int] = {}
        self.lock = threading.Lock()

    def get_state(self, source_id: str) -> SyncState:
        return self.states.get(source_id, SyncState(source_id))

    # -- lease: same rules as the DynamoDB adapter, with a lock for atomicity ------------------
    def acquire_lease(
        self, source_id: str, holder: str, *, now: datetime, lease_seconds: int,
        margin_seconds: float,
    ) -> LeaseGrant:
        with self.lock:
            current = self.leases.get(source_id)
            if current is not None and not may_take_over(current.until, now, margin_seconds):
                raise LeaseHeldError(source_id, current.holder, current.until.isoformat())
            token = self.tokens.get(source_id, 0) + 1
            self.tokens[source_id] = token
            grant = LeaseGrant(source_id, holder, token, lease_until(now, lease_seconds))
            self.leases[source_id] = grant
            return grant

    def renew_lease(self, grant: LeaseGrant, *, now: datetime, lease_seconds: int) -> LeaseGrant:
        with self.lock:
            current = self.leases.get(grant.source_id)
            if current is None or (current.token, current.holder) != (grant.token, grant.holder):
                raise LeaseLostError(grant.source_id, grant.token, "renewal refused")
            renewed = replace(grant, until=lease_until(now, lease_seconds))
            self.leases[grant.source_id] = renewed
            return renewed

    def release_lease(self, grant: LeaseGrant) -> bool:
        with self.lock:
            current = self.leases.get(grant.source_id)
            if current is None or (current.token, current.holder) != (grant.token, grant.holder):
                return False
            del self.leases[grant.source_id]
            return True

    def get_lease(self, source_id: str) -> LeaseGrant | None:
        return self.leases.get(source_id)

    def check_fence(self, source_id: str, fence: int | None, detail: str) -> None:
        """Raise LeaseLostError unless ``fence`` is None or the current token (hold ``lock``)."""
        if fence is not None and self.tokens.get(source_id) != fence:
            raise LeaseLostError(source_id, fence, detail)

    # -- sync state and job results -------------------------------------------------------------
    def commit_progress(
        self, source_id: str, *, until: datetime, node_id: str,
        baseline_taken_at: datetime | None, at: datetime, fence: int | None,
        env: str | None = None, rebaseline: bool = False,
    ) -> SyncState:
        with self.lock:
            self.check_fence(source_id, fence, "watermark not moved")
            state = self.get_state(source_id)
            mark = state.last_completed_until
            if mark is not None and mark > until:
                return state
            if baseline_taken_at is None:
                state = replace(state, last_completed_until=until,
                                node_id=state.node_id or node_id, env=state.env or env or None)
            else:
                state = replace(state, last_completed_until=until, node_id=node_id,
                                env=env or None, baseline_taken_at=(
                                    baseline_taken_at if rebaseline
                                    else state.baseline_taken_at or baseline_taken_at))
            self.states[source_id] = state
            return state

    def record_result(
        self, job: JobResult, *, expires_at: datetime, fence: int | None = None,
        health_buckets: Mapping[int, tuple[int, int]] | None = None,
    ) -> None:
        with self.lock:
            summary = job_to_dict(job)
            key = f"{summary['started_at']}#{job.job_id}"
            self.jobs.setdefault(job.source_id, {})[key] = summary
            if job.status is JobStatus.SKIPPED:
                return
            self.check_fence(job.source_id, fence, "sync state not updated")
            state = self.get_state(job.source_id)
            at = job.finished_at or job.started_at
            if job.status is JobStatus.ERROR:
                state = replace(state, last_job=summary, last_error=job.error, last_error_at=at,
                                consecutive_failures=state.consecutive_failures + 1)
            else:
                state = replace(state, last_job=summary, last_success_at=at,
                                consecutive_failures=0)
            if health_buckets is not None:
                state = replace(state, health_buckets=dict(health_buckets), health=job.health)
            self.states[job.source_id] = state

    def list_jobs(self, source_id: str, limit: int) -> list[dict[str, object]]:
        jobs = self.jobs.get(source_id, {})
        return [jobs[k] for k in sorted(jobs, reverse=True)][:limit]


class FakeCheckpointStore:
    """:class:`minutemeter.ports.CheckpointStore` in memory, fenced on ``sync``'s tokens."""

    def __init__(self, sync: FakeSyncStore) -> None:
        self.sync = sync
        self.checkpoints: dict[tuple[str, str, str], Checkpoint] = {}

    def get_checkpoints(
        self, source_id: str, node_id: str, account_ids: Iterable[str]
    ) -> dict[str, Checkpoint]:
        with self.sync.lock:
            return {
                a: self.checkpoints[(source_id, node_id, a)]
                for a in account_ids
                if (source_id, node_id, a) in self.checkpoints
            }

    def list_checkpoints(self, source_id: str) -> list[Checkpoint]:
        with self.sync.lock:
            return [cp for key, cp in self.checkpoints.items() if key[0] == source_id]

    def advance_checkpoints(
        self, source_id: str, checkpoints: Iterable[Checkpoint], *, fence: int | None = None
    ) -> int:
        moved = 0
        with self.sync.lock:
            self.sync.check_fence(source_id, fence, "checkpoints not moved")
            for cp in checkpoints:
                key = (source_id, cp.node_id, cp.account_id)
                current = self.checkpoints.get(key)
                if current is None or current.taken_at < cp.taken_at:
                    self.checkpoints[key] = cp
                    moved += 1
        return moved


class FakeProfileStore:
    """:class:`minutemeter.ports.ProfileStore` in memory."""

    def __init__(self) -> None:
        self.profiles: dict[str, BillingProfile] = {}
        self.customers: dict[str, str] = {}

    def get_profiles(self, account_ids: Iterable[str]) -> Mapping[str, BillingProfile]:
        return {a: self.profiles[a] for a in account_ids if a in self.profiles}

    def put_profile(
        self, account_id: str, profile: BillingProfile, *, customer: str | None = None
    ) -> None:
        self.profiles[account_id] = profile
        if customer is not None:
            self.customers[account_id] = customer

    def get_customers(self, account_ids: Iterable[str]) -> Mapping[str, str]:
        return {a: self.customers[a] for a in account_ids if a in self.customers}


class FakeRecordStore:
    """:class:`minutemeter.ports.RecordStore` in memory (records never expire here)."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def put_records(
        self, source_id: str, *, quarantined: Sequence[Quarantined],
        resets: Sequence[ResetEvent], run_id: str, at: datetime, expires_at: datetime,
    ) -> None:
        with self._lock:
            for q in quarantined:
                self.records[(source_id, "quarantine", f"{q.taken_at}#{q.digest}")] = {
                    "reason": q.reason, "taken_at": q.taken_at, "account_id": q.account_id,
                    "raw": q.raw, "run_id": run_id,
                }
            for r in resets:
                self.records[(source_id, "reset", f"{r.taken_at}#{r.node_id}#{r.account_id}")] = {
                    "account_id": r.account_id, "previous_bytes": r.previous_bytes,
                    "current_bytes": r.current_bytes, "policy": r.policy.value,
                    "billed_bytes": r.billed_bytes, "run_id": run_id,
                }

    def list_records(self, source_id: str, kind: str, limit: int) -> list[dict[str, object]]:
        keys = sorted((k for k in self.records if k[0] == source_id and k[1] == kind),
                      reverse=True)
        return [dict(self.records[k]) for k in keys[:limit]]


class FakeReconcileStore:
    """:class:`minutemeter.ports.ReconcileStore` in memory."""

    def __init__(self) -> None:
        self.reconcile_progress: dict[tuple[str, str], datetime] = {}
        self.reconciles: dict[str, dict[str, dict[str, object]]] = {}
        self.reconciled_accounts: dict[str, set[str]] = {}

    def get_reconcile_progress(self, source_id: str, reconcile_id: str) -> datetime | None:
        return self.reconcile_progress.get((source_id, reconcile_id))

    def put_reconcile_progress(self, source_id: str, reconcile_id: str, until: datetime) -> None:
        self.reconcile_progress[(source_id, reconcile_id)] = until

    def add_reconciled_accounts(self, source_id: str, account_ids: Iterable[str]) -> None:
        self.reconciled_accounts.setdefault(source_id, set()).update(account_ids)

    def list_reconciled_accounts(self, source_id: str) -> list[str]:
        return sorted(self.reconciled_accounts.get(source_id, set()))

    def record_reconcile(self, result: Mapping[str, object]) -> None:
        key = f"{result['started_at']}#{result['run_id']}"
        self.reconciles.setdefault(str(result["source_id"]), {})[key] = dict(result)

    def list_reconciles(self, source_id: str, limit: int) -> list[dict[str, object]]:
        runs = self.reconciles.get(source_id, {})
        return [runs[k] for k in sorted(runs, reverse=True)][:limit]


class FakeClockVerdictStore:
    """:class:`minutemeter.ports.ClockVerdictStore` in memory."""

    def __init__(self) -> None:
        self.verdict: ClockVerdict | None = None

    def put_clock_verdict(self, verdict: ClockVerdict) -> None:
        self.verdict = verdict

    def get_clock_verdict(self) -> ClockVerdict | None:
        return self.verdict


class FakeDeliveryStore:
    """:class:`minutemeter.ports.DeliveryStore` in memory, with the adapter's conditions."""

    def __init__(self) -> None:
        self.sinks: dict[str, SinkConfig] = {}
        self.records: dict[tuple[str, str], DeliveryRecord] = {}
        self.writes = 0
        self._lock = threading.Lock()

    def put_sink(self, sink: SinkConfig) -> None:
        self.sinks[sink.name] = sink

    def get_sink(self, name: str) -> SinkConfig:
        if name not in self.sinks:
            raise UnknownSinkError(name)
        return self.sinks[name]

    def list_sinks(self) -> list[SinkConfig]:
        return [self.sinks[k] for k in sorted(self.sinks)]

    def get_records(self, sink: str, ledger_ids: Iterable[str]) -> Mapping[str, DeliveryRecord]:
        with self._lock:
            return {i: self.records[(sink, i)] for i in ledger_ids if (sink, i) in self.records}

    def claim(self, record: DeliveryRecord, *, expected_attempts: int | None) -> bool:
        with self._lock:
            self.writes += 1
            current = self.records.get((record.sink, record.ledger_id))
            if expected_attempts is None:
                if current is not None:
                    return False
            elif (current is None or current.attempts != expected_attempts
                  or current.status != "sending"):
                return False
            self.records[(record.sink, record.ledger_id)] = record
            return True

    def settle(self, record: DeliveryRecord) -> None:
        with self._lock:
            self.writes += 1
            current = self.records.get((record.sink, record.ledger_id))
            if (current is not None and current.attempts == record.attempts
                    and current.status == "sending"):
                self.records[(record.sink, record.ledger_id)] = record


def fake_state_stores() -> StateStores:
    """Every store of the state table in memory; checkpoints fence on the sync store's tokens."""
    sync = FakeSyncStore()
    return StateStores(
        sources=FakeSourceStore(),
        sync=sync,
        checkpoints=FakeCheckpointStore(sync),
        profiles=FakeProfileStore(),
        records=FakeRecordStore(),
        reconciles=FakeReconcileStore(),
        verdicts=FakeClockVerdictStore(),
        deliveries=FakeDeliveryStore(),
    )
