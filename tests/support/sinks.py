"""A billing system in memory (:class:`FakeSink`, a ``ports.Sink``) that behaves as the real
ones document, with faults a test injects, and ledger entries to deliver (:func:`make_entries`).

It keeps what the *system* counted (``counted``): a resend inside its dedup window (on its own
clock) is answered DUPLICATE and not counted again; outside the window it is counted twice,
which is exactly what the delivery service must never cause.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from minutemeter.domain.delivery import (
    OUTSIDE_STRIPE_WINDOW,
    DeliveryEvent,
    SendResult,
    SendStatus,
    SinkConfig,
    SinkKind,
    SinkValue,
    timestamp_problem,
)
from minutemeter.domain.model import (
    BillingProfile,
    CorrectionSpec,
    LedgerEntry,
    MinuteUsage,
    QuotaPlan,
)
from minutemeter.domain.rating import plan_entries
from tests.support.clock import FakeClock

# Faults, each consumed by one event sent (see FakeSink.fail).
ACCEPT_THEN_UNKNOWN = "accept_then_unknown"  # counted, but the answer is lost (timeout)
UNKNOWN_NOT_TAKEN = "unknown_not_taken"  # a 5xx before it was recorded
RETRY = "retry"  # 429 with Retry-After
REJECT = "reject"  # 400
ALL = "*"

STRIPE = SinkConfig("stripe-test", SinkKind.STRIPE, "http://127.0.0.1:1", "bytes_out",
                    SinkValue.BILLABLE, api_key_env="STRIPE_KEY")
LAGO = SinkConfig("lago-test", SinkKind.LAGO, "http://127.0.0.1:1", "bytes_out",
                  SinkValue.BYTES, api_key_env="LAGO_KEY")


class SinkCrash(BaseException):
    """The process dies in the middle of sending (nothing catches a BaseException)."""


class FakeSink:
    """``ports.Sink`` in memory. ``dedup_window``: how long the system drops a known id
    (Stripe 24 h; None: always, as Lago's ``transaction_id``); ``can_lookup``: whether it can be
    asked about one event (Lago yes, Stripe no)."""

    def __init__(self, config: SinkConfig, clock: FakeClock, *,
                 dedup_window: timedelta | None = timedelta(hours=24),
                 can_lookup: bool = False, retry_after: float = 2.0) -> None:
        self.config = config
        self.clock = clock
        self._window = dedup_window
        self.can_lookup = can_lookup
        self.retry_after = retry_after
        self.counted: list[DeliveryEvent] = []  # what the system bills, in arrival order
        self.first_seen: dict[str, datetime] = {}
        self.requests = 0  # events received (sent), copies included
        self.down = False  # connection refused: RETRY, nothing received
        self.crash_before: set[str] = set()  # ledger ids whose send kills the sender
        self._faults: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    @property
    def dedup_window(self) -> timedelta | None:
        return self._window

    def fail(self, ledger_id: str, *faults: str) -> None:
        """The next sends of ``ledger_id`` (``ALL``: of any event) meet ``faults`` in order."""
        self._faults.setdefault(ledger_id, []).extend(faults)

    def send(self, events: Sequence[DeliveryEvent]) -> list[SendResult]:
        return [self._one(e) for e in events]

    def lookup(self, event: DeliveryEvent) -> bool | None:
        if not self.can_lookup:
            return None
        with self._lock:
            return event.ledger_id in self.first_seen

    def times_counted(self, ledger_id: str) -> int:
        return sum(1 for e in self.counted if e.ledger_id == ledger_id)

    def total(self) -> int:
        return sum(e.value for e in self.counted)

    def _fault(self, ledger_id: str) -> str | None:
        for key in (ledger_id, ALL):
            queue = self._faults.get(key)
            if queue:
                return queue.pop(0)
        return None

    def _one(self, event: DeliveryEvent) -> SendResult:
        if event.ledger_id in self.crash_before:
            self.crash_before.discard(event.ledger_id)
            raise SinkCrash(event.ledger_id)
        if self.down:
            return SendResult(event.ledger_id, SendStatus.RETRY, "connection_refused")
        with self._lock:
            self.requests += 1
            fault = self._fault(event.ledger_id)
            if fault == RETRY:
                return SendResult(event.ledger_id, SendStatus.RETRY, "rate_limited",
                                  self.retry_after)
            if fault == UNKNOWN_NOT_TAKEN:
                return SendResult(event.ledger_id, SendStatus.UNKNOWN, "http_500")
            now = self.clock.now()
            if timestamp_problem(self.config.kind, event.timestamp, now) == \
                    OUTSIDE_STRIPE_WINDOW or fault == REJECT:
                return SendResult(event.ledger_id, SendStatus.REJECTED, "invalid_timestamp"
                                  if fault is None else "invalid_request")
            first = self.first_seen.get(event.ledger_id)
            if first is not None and (self._window is None or now - first < self._window):
                return SendResult(event.ledger_id, SendStatus.DUPLICATE, "already_exists")
            self.first_seen[event.ledger_id] = now
            self.counted.append(event)
        if fault == ACCEPT_THEN_UNKNOWN:
            return SendResult(event.ledger_id, SendStatus.UNKNOWN, "read_timeout")
        return SendResult(event.ledger_id, SendStatus.ACCEPTED)


PROFILE = BillingProfile(1000, Decimal("0.000000002"), Decimal("1"), "v1")


def make_entries(
    account_id: str, start: datetime, sizes: Sequence[int], *, source_id: str = "src",
    used_before: int = 0, profile: BillingProfile = PROFILE,
) -> list[LedgerEntry]:
    """Usage entries of one account, one a minute from ``start`` (whole minute), with
    ``sizes`` bytes each, rated by ``profile`` after ``used_before`` included bytes."""
    usages = tuple(
        MinuteUsage("node-a", account_id, start + timedelta(minutes=i), n, 0, n,
                    start + timedelta(minutes=i, seconds=10),
                    start + timedelta(minutes=i, seconds=50), 2)
        for i, n in enumerate(sizes)
    )
    month = start.strftime("%Y-%m")
    plan = QuotaPlan(f"b-{start:%d%H%M}", source_id, account_id, month, used_before, profile,
                     "run-1", start + timedelta(minutes=len(sizes) + 1), usages)
    return plan_entries(plan)


def make_correction(entry: LedgerEntry, target_bytes: int, *, used_before: int) -> LedgerEntry:
    """Reconcile's correction of ``entry``'s bucket to ``target_bytes`` (signed difference)."""
    usage = entry.usage
    delta = MinuteUsage(usage.node_id, usage.account_id, usage.minute,
                        target_bytes - usage.bytes, usage.counter_end, usage.counter_end,
                        usage.first_taken_at, usage.last_taken_at, usage.samples)
    spec = CorrectionSpec(delta, target_bytes, 0, entry.included_bytes, entry.ledger_id,
                          "different", "rc-1")
    plan = QuotaPlan("b-corr", entry.source_id, usage.account_id, entry.quota_month,
                     used_before, entry.profile, "run-rc", entry.collected_at, (),
                     corrections=(spec,))
    (correction,) = plan_entries(plan)
    return correction
