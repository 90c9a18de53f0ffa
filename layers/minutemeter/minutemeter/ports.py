"""The outside world, as the service layer sees it. Real adapters and fakes implement these."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from minutemeter.domain.delivery import DeliveryEvent, SendResult, SinkConfig
from minutemeter.domain.marks import Marks
from minutemeter.domain.model import (
    BillingProfile,
    BucketRef,
    Checkpoint,
    ClockVerdict,
    JobResult,
    LedgerEntry,
    Quarantined,
    QuotaPlan,
    QuotaState,
    RawSnapshot,
    ResetEvent,
    SourceConfig,
    SourceKind,
    SyncState,
    Window,
)
from minutemeter.domain.ntp_math import NtpReply
from minutemeter.domain.statement import Statement


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


@dataclass(frozen=True)
class CounterIdentity:
    """The (node_id, env) whose counters a source's snapshots must be.

    ``None`` in a part: not known yet; the first page (or batch) a source yields names it, and
    every later one of the same read must name the same. A read never accepts counters of
    another identity (shared/spec/exporter-api.md: a counter belongs to its node and env)."""

    node_id: str | None
    env: str | None


class WindowRead(Protocol):
    """One window being read from one source: lazy, iterated once.

    Iterating yields the window's snapshots one batch (one page of the transport) at a time,
    in ascending ``taken_at`` order as the source sent them, shape-checked but untrusted (sample
    validation is the service's, the same for every kind). The reader keeps no reference to a
    batch once it is yielded, so memory holds one page, not the window. Iteration raises
    ``ExporterError`` (transport failures) or ``SourceProtocolError`` (a broken page sequence,
    the wrong identity, more than ``domain.protocol.MAX_PAGES_PER_WINDOW`` pages, a malformed
    body; ``minutemeter.domain.exporter_errors.BodyTooLargeError`` when one page is over the
    reader's cap: shrink the window), and ``DeadlineError`` when ``time_left`` runs out.
    """

    @property
    def node_id(self) -> str | None:
        """The node the batches named (the expected one, or learned from the first batch)."""

    @property
    def env(self) -> str | None:
        """The env the batches named, like :attr:`node_id`."""

    @property
    def pages(self) -> int:
        """How many batches (pages) were accepted so far."""

    def __iter__(self) -> Iterator[Sequence[RawSnapshot]]: ...


class CounterReader(Protocol):
    """A kind of source (``SourceConfig.kind``): how the cumulative counters of one source are
    read. One adapter per kind; ``bootstrap`` maps each :class:`SourceKind` to its reader."""

    def read(
        self,
        source: SourceConfig,
        expected: CounterIdentity,
        window: Window,
        *,
        before_request: Callable[[], None],
        time_left: Callable[[], float | None],
    ) -> WindowRead:
        """The snapshots ``source`` has for ``[window.since, window.until)`` (UTC), its
        transport's paging and protocol checks applied inside, identity held to ``expected``.

        No request is made until the result is iterated. ``before_request`` runs before each
        request (deadline and lease checks: it raises to stop the read). ``time_left`` gives,
        before each request, how many seconds that request may take, retries included (None:
        no limit): no request, read or wait between retries goes past it, and
        ``DeadlineError`` is raised when it runs out before the page is read. It is relative so
        that the caller's clock (a budget, possibly a test's) and the adapter's monotonic clock
        never mix."""


SourceReaders = Mapping[SourceKind, CounterReader]
"""The reader of each kind of source, as services receive it (built by ``bootstrap``)."""


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

    def get_quota(self, account_id: str, month: str, *, consistent: bool = True) -> QuotaState:
        """The quota item (strongly consistent unless ``consistent`` is False: then possibly
        stale, which a reservation conditioned on its version detects); version 0 when the
        month has no item yet."""

    def reserve_quota(
        self,
        plan: QuotaPlan,
        *,
        expected_version: int,
        new_used: int,
        marks: Marks | None = None,
        statement: Statement | None = None,
    ) -> None:
        """Set ``used_bytes = new_used``, store ``plan`` as pending, replace the bucket marks by
        ``marks`` and the statement by ``statement`` (``None``: leave either as it is) and bump
        the version, only if the version is still ``expected_version``; else raise
        ``QuotaConflictError``. The month's first plan also lists the account in the month."""

    def get_quotas(self, account_ids: Iterable[str], month: str) -> Iterator[QuotaState]:
        """The quota items of ``account_ids`` for ``month`` that exist (eventually
        consistent)."""

    def month_accounts(self, month: str) -> Iterator[str]:
        """Every account listed in ``month`` (any that ever had a plan reserved in it, and
        possibly one whose first reservation failed), without a table scan."""

    def month_entries(self, source_id: str, account_id: str, month: str) -> Iterator[LedgerEntry]:
        """The entries of one source and account whose minute lies in ``month``."""

    def partition_entries(
        self, source_id: str, account_id: str, *, since: datetime, until: datetime,
        after: str | None = None,
    ) -> Iterator[tuple[str, LedgerEntry]]:
        """The entries of one source and account whose minute lies in ``[since, until)``, in
        key order, each with its key: an opaque string that grows along that order (the sort
        key of its item). With ``after``, only the entries whose key is greater. One Query,
        read page by page as the caller iterates (``ledger export`` resumes from a key)."""

    def existing_buckets(
        self, refs: Sequence[BucketRef], *, consistent: bool = True
    ) -> set[BucketRef]:
        """Which of ``refs`` already have a ledger entry. Strongly consistent unless
        ``consistent`` is False: then an entry written moments ago may be missed (never one
        reported that does not exist: entries are never deleted)."""

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


# -- the state table: one port per aggregate --------------------------------------------------
class SourceStore(Protocol):
    """The source registry: one configuration per source id."""

    def put_source(self, source: SourceConfig) -> None:
        """Create or replace the source's configuration (every field)."""

    def get_source(self, source_id: str) -> SourceConfig:
        """Raises ``SourceNotFoundError``; a stored record that does not parse or is not
        operable raises ``SourceUnreadableError`` (``domain.registry``)."""

    def list_sources(self) -> list[SourceConfig]:
        """Every readable source, by source id (an unreadable record is left out)."""


class LeaseStore(Protocol):
    """A source's lease: who may write its sync state, checkpoints and ledger entries now.

    ``token`` (the fencing token) grows by one with each grant and never goes back, so a write
    fenced on a holder's token fails once another runner has taken over. Times are aware UTC.
    """

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


class SyncStore(LeaseStore, Protocol):
    """A source's sync state (watermark, counter identity, last job, health), its lease and its
    job results.

    State and lease share one item (never deleted), so each write of the state can be fenced:
    with ``fence``, it happens only while that is still the source's lease token, else
    ``LeaseLostError`` and nothing changes.
    """

    def get_state(self, source_id: str) -> SyncState:
        """The source's sync state; an empty one (no watermark) if it has none yet."""

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

    def list_jobs(self, source_id: str, limit: int) -> list[dict[str, object]]:
        """The latest ``limit`` job results as plain values (times RFC 3339), newest first."""


class CheckpointStore(Protocol):
    """The last counter reading of each (source, node, account): where its next diff starts."""

    def get_checkpoints(
        self, source_id: str, node_id: str, account_ids: Iterable[str]
    ) -> dict[str, Checkpoint]:
        """The checkpoints of ``account_ids`` on ``node_id``, by account id; an account without
        one is absent."""

    def advance_checkpoints(
        self, source_id: str, checkpoints: Iterable[Checkpoint], *, fence: int | None = None
    ) -> int:
        """Store checkpoints that are newer (``taken_at``) than the stored ones; return how many
        moved. With ``fence``, each batch is written only while the lease token is current,
        else ``LeaseLostError``."""

    def list_checkpoints(self, source_id: str) -> list[Checkpoint]:
        """Every (node, account) the source has reported."""


class ProfileStore(Protocol):
    """Billing profiles (included bytes, price per byte, multiplier) by account id."""

    def get_profiles(self, account_ids: Iterable[str]) -> Mapping[str, BillingProfile]:
        """The stored profiles of ``account_ids``, by account id; an account without one is
        absent (the caller applies the default profile)."""

    def put_profile(
        self, account_id: str, profile: BillingProfile, *, customer: str | None = None
    ) -> None:
        """Create or replace the account's profile; set its billing ``customer`` (the account's
        id in the billing system) when given, else keep the one it has."""

    def get_customers(self, account_ids: Iterable[str]) -> Mapping[str, str]:
        """The billing customer of each of ``account_ids`` that has one, by account id (not in
        :class:`BillingProfile`: every ledger entry copies that, and must stay small)."""


class RecordStore(Protocol):
    """What a run quarantined and the counter resets it saw, kept for operators (they expire)."""

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

    def list_records(self, source_id: str, kind: str, limit: int) -> list[dict[str, object]]:
        """The latest ``limit`` records of ``kind`` (``quarantine`` or ``reset``), newest
        first, as plain values."""


class ReconcileStore(Protocol):
    """Reconcile bookkeeping per source: how far a confirmed reconcile got, the accounts only
    reconcile has billed, and the audit record of each run."""

    def get_reconcile_progress(self, source_id: str, reconcile_id: str) -> datetime | None:
        """How far a confirmed reconcile got (its chunks before this are done)."""

    def put_reconcile_progress(self, source_id: str, reconcile_id: str, until: datetime) -> None:
        """Record that the confirmed reconcile ``reconcile_id`` is done up to ``until``."""

    def add_reconciled_accounts(self, source_id: str, account_ids: Iterable[str]) -> None:
        """Accounts that reconcile corrected but the collector never saw (no checkpoint)."""

    def list_reconciled_accounts(self, source_id: str) -> list[str]:
        """The accounts :meth:`add_reconciled_accounts` stored for the source."""

    def record_reconcile(self, result: Mapping[str, object]) -> None:
        """The audit record of one reconcile: who, when, window, dry run, result."""

    def list_reconciles(self, source_id: str, limit: int) -> list[dict[str, object]]:
        """The latest ``limit`` audit records of the source, newest first."""


class ClockVerdictStore(Protocol):
    """The latest drift verdict: written by the drift check, read by the clock guard."""

    def put_clock_verdict(self, verdict: ClockVerdict) -> None:
        """Store the latest drift verdict (one item, replaced each check)."""

    def get_clock_verdict(self) -> ClockVerdict | None:
        """The latest drift verdict, or None if no drift check has run."""


class Sink(Protocol):
    """One billing system (one registered sink), through its official client."""

    config: SinkConfig

    @property
    def dedup_window(self) -> timedelta | None:
        """How long the system drops a resend of an id it already has (Stripe: 24 hours);
        None when it always does (Lago's ``transaction_id``)."""

    def send(self, events: Sequence[DeliveryEvent]) -> list[SendResult]:
        """Send ``events``; one result per event, in order. Never raises for an answer of the
        system (that is a result); raises only for a fault of the caller's making."""

    def lookup(self, event: DeliveryEvent) -> bool | None:
        """Whether the system has the event (Lago answers by ``transaction_id``); None when
        the system cannot be asked about one event (Stripe)."""


@dataclass(frozen=True)
class DeliveryRecord:
    """What is known of one entry's delivery to one sink. ``status``: ``sending`` (claimed,
    outcome not yet known), ``delivered``, ``rejected`` (never taken; reported) or ``unknown``
    (may have been taken, outside the dedup window: reported for reconcile, never resent).
    ``maybe_sent_at`` is the first moment an attempt may have reached the system (None while
    every attempt is known not to have); ``attempts`` fences concurrent senders."""

    sink: str
    ledger_id: str
    status: str
    attempts: int
    first_attempt_at: datetime
    maybe_sent_at: datetime | None = None
    detail: str = ""


class DeliveryStore(Protocol):
    """Sinks and delivery records (state table)."""

    def put_sink(self, sink: SinkConfig) -> None:
        """Create or replace a sink."""

    def get_sink(self, name: str) -> SinkConfig:
        """The sink called ``name``; raises ``UnknownSinkError`` if there is none."""

    def list_sinks(self) -> list[SinkConfig]:
        """Every registered sink, by name."""

    def get_records(self, sink: str, ledger_ids: Iterable[str]) -> Mapping[str, DeliveryRecord]:
        """The delivery records of ``ledger_ids`` that exist, by ledger id."""

    def claim(self, record: DeliveryRecord, *, expected_attempts: int | None) -> bool:
        """Write ``record`` (status ``sending``; ``rejected`` for an entry refused before any
        attempt) if the stored one is still ``sending`` with ``expected_attempts`` attempts
        (None: if there is none); False when another sender got there first."""

    def settle(self, record: DeliveryRecord) -> None:
        """Store the outcome of the attempt ``record.attempts`` (delivered, rejected, unknown,
        or back to sending with ``maybe_sent_at`` restored after a certain refusal)."""


@dataclass(frozen=True)
class StateStores:
    """Every store of the state table, as the composition root wires them (one adapter each,
    over one table). Not a port: a use case takes only the stores it uses."""

    sources: SourceStore
    sync: SyncStore
    checkpoints: CheckpointStore
    profiles: ProfileStore
    records: RecordStore
    reconciles: ReconcileStore
    verdicts: ClockVerdictStore
    deliveries: DeliveryStore
