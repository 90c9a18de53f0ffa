"""The outside world, as the service layer sees it. Real adapters and fakes implement these."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from minutemeter.domain.model import (
    BillingProfile,
    BucketRef,
    Checkpoint,
    ClockVerdict,
    JobResult,
    LedgerEntry,
    Page,
    Quarantined,
    QuotaPlan,
    QuotaState,
    ResetEvent,
    SourceConfig,
    SyncState,
    Window,
)
from minutemeter.domain.ntp_math import NtpReply


class Clock(Protocol):
    """The only source of time and of random run ids."""

    def now(self) -> datetime:
        """Wall-clock time, aware UTC."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never goes back; for durations only."""

    def new_run_id(self) -> str:
        """A fresh, unique id for one run."""


class NtpClient(Protocol):
    """One NTP exchange at a time (implemented by ``minutemeter.adapters.ntp.NtplibClient``)."""

    def resolve(self, host: str) -> str:
        """An IPv4 literal for ``host``; raises ``NtpResolveError``."""

    def query(self, address: str, port: int = 123, *, timeout: float) -> NtpReply:
        """One request to ``address:port`` (IPv4 literal) within ``timeout`` seconds; raises
        ``NtpTimeoutError`` (incl. ``NtpOriginMismatchError``) or ``NtpTransportError``."""


class Budget(Protocol):
    """How long the current invocation may still run."""

    def remaining_seconds(self) -> float | None:
        """Seconds left before the hard deadline, or ``None`` when there is none."""


class Exporter(Protocol):
    """The window API of one source (shared/spec/exporter-api.md)."""

    def fetch_page(
        self,
        source: SourceConfig,
        window: Window,
        cursor: str | None,
        *,
        time_left: float | None = None,
    ) -> Page:
        """One page of ``[window.since, window.until)``; raises ``ExporterError`` or
        ``SourceProtocolError`` for transport failures and malformed bodies
        (``minutemeter.domain.exporter_errors.BodyTooLargeError`` when the body is over the
        adapter's cap: shrink the window).

        ``time_left`` is how many seconds the whole call may take, retries included (None: no
        limit): no request, read or wait between retries goes past it, and ``DeadlineError`` is
        raised when it runs out before the page is read. It is relative so that the caller's
        clock (a budget, possibly a test's) and the adapter's monotonic clock never mix."""


@dataclass(frozen=True)
class PutOutcome:
    written: int
    existed: int


@dataclass(frozen=True)
class LeaseGrant:
    """A held lease: ``token`` is the fencing token, ``until`` the holder's view of its end."""

    source_id: str
    holder: str
    token: int
    until: datetime


@dataclass(frozen=True)
class LedgerFilter:
    source_id: str | None = None
    account_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class LedgerStore(Protocol):
    """Ledger entries (one per minute bucket) and per-account monthly quota."""

    def get_quota(self, account_id: str, month: str) -> QuotaState:
        """Strongly consistent read; version 0 when the month has no item yet."""

    def reserve_quota(self, plan: QuotaPlan, *, expected_version: int, new_used: int) -> None:
        """Set ``used_bytes = new_used``, store ``plan`` as pending and bump the version, only if
        the version is still ``expected_version``; else raise ``QuotaConflictError``."""

    def existing_buckets(self, refs: Sequence[BucketRef]) -> set[BucketRef]:
        """Which of ``refs`` already have a ledger entry (strongly consistent)."""

    def put_entries(self, entries: Sequence[LedgerEntry]) -> PutOutcome:
        """Write each entry only if its bucket has none yet (conditional put, one per entry)."""

    def write_reserved(self, entries: Sequence[LedgerEntry]) -> int:
        """Write the entries of a reservation this runner has just made, in batches.

        Unconditional: the reservation (a conditional update) already guarantees that no other
        plan holds these buckets, and an entry's content is a pure function of its plan, so a
        second write of the same entry, by a runner finishing the plan, writes the same item.
        Returns the number of entries written.
        """

    def export(self, selection: LedgerFilter) -> Iterator[LedgerEntry]:
        """Entries matching ``selection``; minutes in ``[since, until)``."""

    def last_usage_before(
        self, source_id: str, node_id: str, account_id: str, before: datetime
    ) -> LedgerEntry | None:
        """The latest usage entry (not a correction) of the node's account before ``before``."""


class StateStore(Protocol):
    """Sources, their sync state, checkpoints, billing profiles and run records."""

    def put_source(self, source: SourceConfig) -> None: ...

    def get_source(self, source_id: str) -> SourceConfig:
        """Raises ``SourceNotFoundError``."""

    def list_sources(self) -> list[SourceConfig]: ...

    def get_state(self, source_id: str) -> SyncState: ...

    def commit_progress(
        self,
        source_id: str,
        *,
        until: datetime,
        node_id: str,
        baseline_taken_at: datetime | None,
        at: datetime,
        fence: int | None,
        env: str | None = None,
        rebaseline: bool = False,
    ) -> SyncState:
        """Move the watermark to ``until`` unless it is already further; return the state.

        The source's counter identity (``node_id``, ``env``) is recorded with its baseline: the
        first one, or with ``rebaseline`` a new one that replaces it (the identity changed);
        without a baseline only a missing identity is filled in.

        With ``fence``, only while that is still the source's lease token, else raise
        ``LeaseLostError`` and change nothing.
        """

    def record_result(
        self,
        job: JobResult,
        *,
        expires_at: datetime,
        fence: int | None = None,
        health_buckets: Mapping[int, tuple[int, int]] | None = None,
    ) -> None:
        """Store the job; then update the source's last job, success/error, failure count and
        (when given) health buckets and ``job.health``, except for skipped runs; fenced like
        :meth:`commit_progress` (the health update is a read-modify-write under the lease)."""

    # -- lease (fields of the sync-state item, which is never deleted) --------------------------
    def acquire_lease(
        self,
        source_id: str,
        holder: str,
        *,
        now: datetime,
        lease_seconds: int,
        margin_seconds: float,
    ) -> LeaseGrant:
        """Take the lease if free or expired by more than ``margin_seconds`` at ``now``; the
        token grows by one. Raises ``LeaseHeldError``."""

    def renew_lease(self, grant: LeaseGrant, *, now: datetime, lease_seconds: int) -> LeaseGrant:
        """Extend a held lease; raises ``LeaseLostError`` if the token is no longer current."""

    def release_lease(self, grant: LeaseGrant) -> bool:
        """Free the lease if still ours (the token stays); False if it was not ours any more."""

    def get_lease(self, source_id: str) -> LeaseGrant | None:
        """The current holder, or None when free."""

    def list_jobs(self, source_id: str, limit: int) -> list[dict[str, object]]: ...

    def get_checkpoints(
        self, source_id: str, node_id: str, account_ids: Iterable[str]
    ) -> dict[str, Checkpoint]: ...

    def advance_checkpoints(
        self, source_id: str, checkpoints: Iterable[Checkpoint], *, fence: int | None = None
    ) -> int:
        """Store checkpoints that are newer (``taken_at``) than the stored ones; return how many
        moved. With ``fence``, each batch is written only while the lease token is current,
        else ``LeaseLostError``."""

    def list_checkpoints(self, source_id: str) -> list[Checkpoint]:
        """Every (node, account) the source has reported."""

    def get_profiles(self, account_ids: Iterable[str]) -> Mapping[str, BillingProfile]: ...

    def put_profile(self, account_id: str, profile: BillingProfile) -> None: ...

    def put_records(
        self,
        source_id: str,
        *,
        quarantined: Sequence[Quarantined],
        resets: Sequence[ResetEvent],
        run_id: str,
        at: datetime,
        expires_at: datetime,
    ) -> None:
        """Quarantine and reset records; idempotent (keyed by content)."""

    def list_records(self, source_id: str, kind: str, limit: int) -> list[dict[str, object]]: ...

    def get_reconcile_progress(self, source_id: str, reconcile_id: str) -> datetime | None:
        """How far a confirmed reconcile got (its chunks before this are done)."""

    def put_reconcile_progress(self, source_id: str, reconcile_id: str, until: datetime) -> None:
        ...

    def add_reconciled_accounts(self, source_id: str, account_ids: Iterable[str]) -> None:
        """Accounts that reconcile corrected but the collector never saw (no checkpoint)."""

    def list_reconciled_accounts(self, source_id: str) -> list[str]: ...

    def record_reconcile(self, result: Mapping[str, object]) -> None:
        """The audit record of one reconcile: who, when, window, dry run, result."""

    def list_reconciles(self, source_id: str, limit: int) -> list[dict[str, object]]: ...

    def put_clock_verdict(self, verdict: ClockVerdict) -> None:
        """Store the latest drift verdict (one item, replaced each check)."""

    def get_clock_verdict(self) -> ClockVerdict | None:
        """The latest drift verdict, or None if no drift check has run."""
