"""Domain records: frozen dataclasses, no behaviour that touches the outside world."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # statement.py builds on this module's records
    from minutemeter.domain.statement import Statement


class ResetPolicy(StrEnum):
    """What a counter that went down means.

    ``skip`` (default, as in the original service): move the checkpoint, bill nothing, record it.
    ``from-zero`` (Prometheus-style): the new value is the usage since the reset.
    """

    SKIP = "skip"
    FROM_ZERO = "from-zero"


class SourceKind(StrEnum):
    """How a source's counters are read. Each kind has one adapter, picked in ``bootstrap``."""

    EXPORTER = "exporter"  # our window API (``../shared/spec/exporter-api.md``) over HTTP
    PROMETHEUS = "prometheus"  # raw samples of a series selector, Prometheus HTTP API


class SourceAuth(StrEnum):
    """How requests to a source are authenticated. ``bearer``: the token ``token_secret``
    names; ``sigv4``: AWS Signature V4 for service ``aps`` (Amazon Managed Service for
    Prometheus) with the standard AWS credentials and region."""

    NONE = "none"
    BEARER = "bearer"
    SIGV4 = "sigv4"


class ClockGuardAction(StrEnum):
    """What a source does when the clock cannot be trusted to the source's margin."""

    WIDEN = "widen"  # add the clock's error bound to the lag
    PAUSE = "pause"  # bill nothing this run, report clock_guard


class JobStatus(StrEnum):
    OK = "ok"
    PARTIAL = "partial"
    ERROR = "error"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class BillingProfile:
    """Pricing for one account. ``included_bytes`` is per calendar month (UTC)."""

    included_bytes: int
    price_per_byte: Decimal
    multiplier: Decimal
    pricing_rule_version: str

    @property
    def effective_multiplier(self) -> Decimal:
        """A multiplier <= 0 falls back to 1, as in the original service."""
        return self.multiplier if self.multiplier > 0 else Decimal(1)


@dataclass(frozen=True)
class SourceConfig:
    """A registered exporter. Durations are whole seconds; ``start`` is minute-aligned UTC."""

    source_id: str
    url: str
    start: datetime
    node_id: str | None = None
    env: str | None = None
    lag_seconds: int = 60
    max_window_seconds: int = 3600
    reset_policy: ResetPolicy = ResetPolicy.SKIP
    lease_seconds: int = 60
    token_secret: str | None = None
    clock_tolerance_seconds: int | None = None
    enabled: bool = True
    clock_guard: ClockGuardAction = ClockGuardAction.WIDEN
    clock_margin_ms: int = 1000
    kind: SourceKind = SourceKind.EXPORTER
    # kind ``prometheus`` only: the series selector, the labels naming account and node
    selector: str | None = None
    account_label: str | None = None
    node_label: str | None = None
    auth: SourceAuth = SourceAuth.NONE


@dataclass(frozen=True)
class ClockVerdict:
    """The latest drift check: this clock's offset from true time (server minus local, ms) and
    the bound within which the true offset lies, when it was measured, and its status."""

    measured_at: datetime
    status: str
    offset_ms: Decimal
    bound_ms: Decimal
    valid_sources: int
    detail: str = ""


@dataclass(frozen=True)
class SyncState:
    """Where a source stands. ``last_completed_until``: everything before it is committed."""

    source_id: str
    last_completed_until: datetime | None = None
    baseline_taken_at: datetime | None = None
    node_id: str | None = None  # the counter identity (node, env) read at the baseline
    env: str | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    consecutive_failures: int = 0
    last_job: dict[str, object] | None = None
    health_buckets: dict[int, tuple[int, int]] = field(default_factory=dict)
    health: dict[str, object] | None = None


@dataclass(frozen=True)
class Window:
    """A half-open, minute-aligned interval ``[since, until)``."""

    since: datetime
    until: datetime

    @property
    def empty(self) -> bool:
        return self.since >= self.until


@dataclass(frozen=True)
class RawSnapshot:
    """A snapshot as the exporter sent it: untrusted, unvalidated."""

    taken_at: object
    samples: tuple[object, ...]


@dataclass(frozen=True)
class Page:
    """One page of the window API, shape-checked but not yet trusted."""

    node_id: str
    env: str
    snapshots: tuple[RawSnapshot, ...]
    has_more: bool
    next_cursor: str | None
    digest: str


@dataclass(frozen=True, slots=True)  # one per sample or account: kept small
class Sample:
    account_id: str
    total_bytes: int
    taken_at: datetime


@dataclass(frozen=True, slots=True)  # one per sample or account: kept small
class Snapshot:
    """A validated snapshot. ``unreadable_accounts``: accounts whose sample in it was
    quarantined (their value is unknown, though the account is present)."""

    taken_at: datetime
    samples: tuple[Sample, ...]
    unreadable_accounts: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Quarantined:
    """A sample (or snapshot) that was not billed, kept with the reason why."""

    reason: str
    taken_at: str
    account_id: str | None
    raw: str
    digest: str


@dataclass(frozen=True, slots=True)  # one per sample or account: kept small
class Checkpoint:
    """The last counter value seen for (node, account), and when it was taken.

    ``total_bytes`` is :data:`UNKNOWN_VALUE` for an account that was present in the source's
    baseline snapshot with an unreadable sample: its next valid value is a baseline too.
    """

    node_id: str
    account_id: str
    total_bytes: int
    taken_at: datetime

    @property
    def value_known(self) -> bool:
        return self.total_bytes != UNKNOWN_VALUE


UNKNOWN_VALUE = -1


@dataclass(frozen=True)
class ResetEvent:
    node_id: str
    account_id: str
    taken_at: datetime
    previous_bytes: int
    current_bytes: int
    policy: ResetPolicy
    billed_bytes: int


@dataclass(frozen=True, slots=True)  # one per sample or account: kept small
class MinuteUsage:
    """A minute bucket: usage of one (node, account) attributed to one UTC minute.

    ``counter_start`` is the counter before the first increase of the minute (0 for a new
    account), ``counter_end`` the last value seen in the minute.
    """

    node_id: str
    account_id: str
    minute: datetime
    bytes: int
    counter_start: int
    counter_end: int
    first_taken_at: datetime
    last_taken_at: datetime
    samples: int
    resets: int = 0


@dataclass(frozen=True)
class BucketRef:
    """The key of one minute bucket (and of its ledger entry)."""

    source_id: str
    node_id: str
    account_id: str
    minute: datetime
    variant: str = ""  # "" for the usage entry, "C<sequence>-<target bytes>" for a correction


@dataclass(frozen=True)
class CorrectionSpec:
    """A correction of one bucket found by reconcile: ``usage.bytes`` is the signed difference
    that brings the bucket's ledger total (usage entry plus earlier corrections) to
    ``target_bytes``."""

    usage: MinuteUsage
    target_bytes: int
    sequence: int  # corrections the bucket already has; with the target, names this one
    included_before: int  # included bytes the bucket's entries hold so far
    corrects: str | None  # ledger id of the bucket's usage entry, if it has one
    reason: str  # missing | different | unexplained
    reconcile_id: str


@dataclass(frozen=True)
class LedgerEntry:
    """A billing fact for one minute bucket. ``ledger_id`` is UUIDv5 over the bucket key."""

    ledger_id: str
    source_id: str
    usage: MinuteUsage
    included_bytes: int
    billable_bytes: int
    amount: Decimal
    profile: BillingProfile
    quota_month: str
    quota_before: int
    batch_id: str
    run_id: str
    collected_at: datetime
    kind: str = "usage"
    clock_bound_ms: Decimal | None = None
    correction: CorrectionSpec | None = None  # set on kind "correction"


@dataclass(frozen=True)
class QuotaPlan:
    """A reservation of included quota for new entries of one (account, month).

    It carries everything needed to write its entries, so any runner that finds it pending can
    finish it (see docs/design.md).
    """

    batch_id: str
    source_id: str
    account_id: str
    month: str
    used_before: int
    profile: BillingProfile
    run_id: str
    collected_at: datetime
    usages: tuple[MinuteUsage, ...]
    clock_bound_ms: Decimal | None = None
    corrections: tuple[CorrectionSpec, ...] = ()


@dataclass(frozen=True)
class QuotaState:
    """Included bytes used by one account in one month; ``version`` 0 means no item yet.

    ``marks``: per (source, node), the latest minute any plan on this item reserved
    (``domain/marks.py``); ``None`` on an item stored before marks existed. ``statement``: the
    sum of the entries of every plan on it (``domain/statement.py``); ``None`` when there is
    no item yet or it was stored before statements existed."""

    account_id: str
    month: str
    used_bytes: int = 0
    version: int = 0
    pending: QuotaPlan | None = None
    marks: Mapping[str, datetime] | None = field(default_factory=dict)
    statement: Statement | None = None


@dataclass
class JobResult:
    """The outcome of one collector run, stored and printed. Mutable while the run builds it."""

    job_id: str
    job: str
    source_id: str
    started_at: datetime
    status: JobStatus = JobStatus.OK
    finished_at: datetime | None = None
    window_since: datetime | None = None
    window_until: datetime | None = None
    completed_until: datetime | None = None
    processed_samples: int = 0
    written_minutes: int = 0
    replayed_minutes: int = 0
    quarantined_samples: int = 0
    counter_resets: int = 0
    skipped_samples: int = 0
    pages: int = 0
    caught_up: bool = False
    lease_token: int | None = None
    clock_guard: dict[str, object] | None = None
    lag_seconds: int | None = None
    health: dict[str, object] | None = None
    error: str | None = None
    error_type: str | None = None
    notes: list[str] = field(default_factory=list)
