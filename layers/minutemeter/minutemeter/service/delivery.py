"""Delivery of ledger entries to a billing sink, exactly once (issue 11).

The billing system dedups by the ledger id only for a while (Stripe: a rolling 24 hours; a
stream record lives 24 hours too), so exactly once rests on a delivery record per (sink, ledger
id) in the state table (``ports.DeliveryStore``), written with conditions on its ``attempts``:

1. ``claim`` the entry (status ``sending``, ``maybe_sent_at`` = now) *before* sending it; a
   claim that loses (another sender, or a settle in between) leaves the entry to that sender.
2. send, then ``settle`` the answer: accepted or already there → ``delivered`` (never sent
   again); refused for good → ``rejected`` (reported); certainly not taken (429, refused
   connection) → back to ``sending`` with ``maybe_sent_at`` as it was before the attempt;
   maybe taken (timeout, 5xx) → stays ``sending`` with ``maybe_sent_at`` set.
3. a ``sending`` record found later (an unknown outcome, or a crash between claim and send):
   without ``maybe_sent_at`` it is resent; with one, the system is asked (Lago, by
   ``transaction_id``); a system that cannot be asked (Stripe) gets the resend only while the
   first possible landing is inside its dedup window minus ``DEDUP_SAFETY_MARGIN`` (its dedup
   drops the copy); past that the record settles ``unknown``: reported for reconcile, never
   resent. Every resend is a claim conditioned on the attempts it read, so two senders that
   saw the same state cannot both resend it.

Failure table (the process dies, or the sink fails, ...):

=====================================  ============================  ===========================
where                                  left behind                   next run
=====================================  ============================  ===========================
before the claim                       nothing                       claims and sends
after the claim, before/while sending  ``sending``, maybe_sent_at    resend inside the window
                                                                     (dedup drops a copy), else
                                                                     ``unknown``
after sending, before the settle       same                          same: lookup or window
two senders, same entry                one claim wins                the loser counts it in
                                                                     flight (exit 3, retried)
=====================================  ============================  ===========================

Writes per delivered entry: one claim and one settle (two conditional PutItems of a ~250-byte
item: 2 write units), plus one strongly consistent read (1 read unit) per entry looked at. An
entry whose sink value is 0 costs nothing (no record: the bill is the same without it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from minutemeter.domain.delivery import (
    AHEAD_OF_STRIPE_WINDOW,
    OUTSIDE_STRIPE_WINDOW,
    DeliveryEvent,
    SendResult,
    SendStatus,
    event_of,
    event_value,
    timestamp_problem,
)
from minutemeter.domain.model import LedgerEntry
from minutemeter.ports import (
    Budget,
    Clock,
    DeliveryRecord,
    DeliveryStore,
    ProfileStore,
    Sink,
)

logger = logging.getLogger(__name__)

SENDING, DELIVERED, REJECTED, UNKNOWN = "sending", "delivered", "rejected", "unknown"
# A resend is safe only while the system still drops it as a copy. Measured from
# ``maybe_sent_at`` (before the system can have received the first copy, so the real window is
# never shorter than the one measured), the margin covers what makes "now" here differ from the
# system's "now" when it receives the resend: this clock's error (alarmed at 500 ms), the resend's
# own time in flight (client timeouts of seconds, a few retries), and a vaguely documented
# "rolling 24 hours". An hour is far more than all of these; it costs only that an unknown
# outcome older than 23 hours is reported rather than resent.
DEDUP_SAFETY_MARGIN = timedelta(hours=1)
CHUNK_ENTRIES = 100  # entries per records read (one BatchGetItem) and per send
SEND_MARGIN_SECONDS = 20.0  # no claim and send with less budget than this left
MAX_RETRY_ROUNDS = 3  # resends of certainly refused events (429) within one run
FIRST_BACKOFF_SECONDS = 1.0  # doubled each round, or the system's Retry-After if longer
MAX_WAIT_SECONDS = 30.0  # a longer Retry-After ends the run's retries: the next run resends
MAX_LISTED = 100  # ids per list in a report's JSON


@dataclass(frozen=True)
class DeliveryDeps:
    """What a delivery run needs. ``budget``: the run's time (None: no limit); ``sleep``:
    waits between retry rounds (a test's moves its fake clock)."""

    deliveries: DeliveryStore
    profiles: ProfileStore
    clock: Clock
    budget: Budget | None = None
    sleep: Callable[[float], None] = time.sleep


@dataclass
class DeliveryReport:
    """What a run did for one sink. ``pending``: ledger ids not settled that a later run will
    settle by itself (retry, maybe taken inside the window, in flight with another sender, no
    time left); ``no_customer``: entries of accounts without ``--customer`` (not deliverable
    until an operator sets one). ``rejected_ids``/``unknown_ids`` include records settled so by
    earlier runs: each run reports them again."""

    sink: str
    delivered: int = 0
    duplicate: int = 0
    already_delivered: int = 0
    skipped_zero: int = 0
    in_flight: int = 0
    no_customer: int = 0
    stopped_early: bool = False
    rejected_ids: list[str] = field(default_factory=list)
    unknown_ids: list[str] = field(default_factory=list)
    pending: set[str] = field(default_factory=set)
    no_customer_accounts: set[str] = field(default_factory=set)

    @property
    def undelivered(self) -> int:
        return len(self.pending) + self.no_customer

    @property
    def settled(self) -> bool:
        """Nothing left to retry: every entry looked at is delivered, rejected or unknown."""
        return self.undelivered == 0 and not self.stopped_early

    def to_json(self) -> dict[str, object]:
        return {
            "sink": self.sink, "delivered": self.delivered, "duplicate": self.duplicate,
            "already_delivered": self.already_delivered, "skipped_zero": self.skipped_zero,
            "rejected": len(self.rejected_ids), "unknown": len(self.unknown_ids),
            "undelivered": self.undelivered, "in_flight": self.in_flight,
            "no_customer": self.no_customer, "stopped_early": self.stopped_early,
            "rejected_ids": self.rejected_ids[:MAX_LISTED],
            "unknown_ids": self.unknown_ids[:MAX_LISTED],
            "no_customer_accounts": sorted(self.no_customer_accounts)[:MAX_LISTED],
        }


def deliver_entries(
    deps: DeliveryDeps, sink: Sink, entries: Sequence[LedgerEntry],
    report: DeliveryReport | None = None,
) -> DeliveryReport:
    """Deliver ``entries`` to ``sink`` exactly once; the counts go to ``report`` (a new one
    when None), which is returned."""
    report = report if report is not None else DeliveryReport(sink.config.name)
    unique = list({e.ledger_id: e for e in entries}.values())
    for start in range(0, len(unique), CHUNK_ENTRIES):
        _deliver_chunk(deps, sink, unique[start:start + CHUNK_ENTRIES], report)
    return report


def _deliver_chunk(deps: DeliveryDeps, sink: Sink, entries: Sequence[LedgerEntry],
                   report: DeliveryReport) -> None:
    value = sink.config.value
    customers = deps.profiles.get_customers(sorted({e.usage.account_id for e in entries}))
    events: list[DeliveryEvent] = []
    for entry in entries:
        if event_value(entry, value) == 0:
            report.skipped_zero += 1
            continue
        customer = customers.get(entry.usage.account_id)
        if customer is None:
            report.no_customer += 1
            report.no_customer_accounts.add(entry.usage.account_id)
            continue
        events.append(event_of(entry, customer, value))
    for round_ in range(MAX_RETRY_ROUNDS + 1):
        retry, retry_after = _round(deps, sink, events, report)
        if not retry:
            return
        wait = max(retry_after or 0.0, FIRST_BACKOFF_SECONDS * 2**round_)
        if round_ == MAX_RETRY_ROUNDS or wait > MAX_WAIT_SECONDS or not _has_time(deps, wait):
            report.pending.update(e.ledger_id for e in retry)
            return
        deps.sleep(wait)
        events = retry


def _has_time(deps: DeliveryDeps, wait: float = 0.0) -> bool:
    remaining = deps.budget.remaining_seconds() if deps.budget is not None else None
    return remaining is None or remaining - wait >= SEND_MARGIN_SECONDS


@dataclass(frozen=True)
class _Claimed:
    event: DeliveryEvent
    record: DeliveryRecord  # as claimed
    before: datetime | None  # maybe_sent_at before this attempt


def _round(deps: DeliveryDeps, sink: Sink, events: Sequence[DeliveryEvent],
           report: DeliveryReport) -> tuple[list[DeliveryEvent], float | None]:
    """One pass over ``events``: decide, claim, send, settle. Returns the events the system
    certainly refused for now (RETRY) and the longest wait it asked for."""
    if not events:
        return [], None
    if not _has_time(deps):
        report.stopped_early = True
        report.pending.update(e.ledger_id for e in events)
        return [], None
    name = sink.config.name
    now = deps.clock.now()
    records = deps.deliveries.get_records(name, [e.ledger_id for e in events])
    claimed: list[_Claimed] = []
    for event in events:
        record = records.get(event.ledger_id)
        if record is None:
            _first(deps, sink, event, now, report, claimed)
        elif record.status == SENDING:
            _again(deps, sink, event, record, now, report, claimed)
        else:
            _count_settled(record, report)
    if not claimed:
        return [], None
    results = {r.ledger_id: r for r in sink.send([c.event for c in claimed])}
    retry: list[DeliveryEvent] = []
    wait: float | None = None
    for claim in claimed:
        result = results.get(claim.event.ledger_id) or SendResult(
            claim.event.ledger_id, SendStatus.UNKNOWN, "no_answer")
        if _settle(deps, claim, result, report):
            retry.append(claim.event)
            if result.retry_after is not None:
                wait = max(wait or 0.0, result.retry_after)
    return retry, wait


def _first(deps: DeliveryDeps, sink: Sink, event: DeliveryEvent, now: datetime,
           report: DeliveryReport, claimed: list[_Claimed]) -> None:
    """An entry without a record: claim it and send it, unless its time is outside the
    system's limits (then it is rejected, or waits)."""
    name = sink.config.name
    problem = timestamp_problem(sink.config.kind, event.timestamp, now)
    if problem == AHEAD_OF_STRIPE_WINDOW:
        report.pending.add(event.ledger_id)
        return
    if problem == OUTSIDE_STRIPE_WINDOW:
        record = DeliveryRecord(name, event.ledger_id, REJECTED, 0, now, None, problem)
        if deps.deliveries.claim(record, expected_attempts=None):
            _rejected(report, event.ledger_id, problem)
        else:
            _lost(report, event.ledger_id)
        return
    record = DeliveryRecord(name, event.ledger_id, SENDING, 1, now, now)
    if deps.deliveries.claim(record, expected_attempts=None):
        claimed.append(_Claimed(event, record, None))
    else:
        _lost(report, event.ledger_id)


def _again(deps: DeliveryDeps, sink: Sink, event: DeliveryEvent, record: DeliveryRecord,
           now: datetime, report: DeliveryReport, claimed: list[_Claimed]) -> None:
    """An entry whose earlier attempt's outcome is not known (or that is being sent)."""
    if record.maybe_sent_at is not None:
        found = sink.lookup(event)
        if found:
            deps.deliveries.settle(replace(record, status=DELIVERED, detail="found"))
            report.duplicate += 1
            return
        if found is None and not _inside_dedup(sink, record.maybe_sent_at, now):
            deps.deliveries.settle(replace(record, status=UNKNOWN, detail="dedup_window_passed"))
            _unknown(report, event.ledger_id)
            return
    problem = timestamp_problem(sink.config.kind, event.timestamp, now)
    if problem == AHEAD_OF_STRIPE_WINDOW:
        report.pending.add(event.ledger_id)
        return
    if problem == OUTSIDE_STRIPE_WINDOW:
        if record.maybe_sent_at is None:  # no attempt can have landed: never taken
            deps.deliveries.settle(replace(record, status=REJECTED, detail=problem))
            _rejected(report, event.ledger_id, problem)
        else:  # an earlier attempt may have landed, and it can no longer be resent
            deps.deliveries.settle(replace(record, status=UNKNOWN, detail=problem))
            _unknown(report, event.ledger_id)
        return
    resend = replace(record, attempts=record.attempts + 1,
                     maybe_sent_at=record.maybe_sent_at or now, detail="")
    if deps.deliveries.claim(resend, expected_attempts=record.attempts):
        claimed.append(_Claimed(event, resend, record.maybe_sent_at))
    else:
        _lost(report, event.ledger_id)


def _inside_dedup(sink: Sink, maybe_sent_at: datetime, now: datetime) -> bool:
    window = sink.dedup_window
    return window is None or now - maybe_sent_at < window - DEDUP_SAFETY_MARGIN


def _settle(deps: DeliveryDeps, claim: _Claimed, result: SendResult,
            report: DeliveryReport) -> bool:
    """Store the answer to one attempt; True when it should be sent again (RETRY)."""
    ledger_id, settle = claim.event.ledger_id, deps.deliveries.settle
    if result.status in (SendStatus.ACCEPTED, SendStatus.DUPLICATE):
        settle(replace(claim.record, status=DELIVERED, detail=result.status.value))
        if result.status is SendStatus.ACCEPTED:
            report.delivered += 1
        else:
            report.duplicate += 1
    elif result.status is SendStatus.REJECTED:
        settle(replace(claim.record, status=REJECTED, detail=result.detail))
        _rejected(report, ledger_id, result.detail)
    elif result.status is SendStatus.RETRY:
        settle(replace(claim.record, maybe_sent_at=claim.before, detail=result.detail))
        return True
    else:  # UNKNOWN: the claim already says it may have been sent
        report.in_flight += 1
        report.pending.add(ledger_id)
        logger.warning("delivery outcome unknown", extra={"sink": claim.record.sink,
                       "ledger_id": ledger_id, "detail": result.detail})
    return False


def _count_settled(record: DeliveryRecord, report: DeliveryReport) -> None:
    if record.status == DELIVERED:
        report.already_delivered += 1
    elif record.status == REJECTED:
        report.rejected_ids.append(record.ledger_id)
    else:
        report.unknown_ids.append(record.ledger_id)


def _rejected(report: DeliveryReport, ledger_id: str, detail: str) -> None:
    report.rejected_ids.append(ledger_id)
    logger.warning("delivery rejected", extra={"sink": report.sink, "ledger_id": ledger_id,
                                               "detail": detail})


def _unknown(report: DeliveryReport, ledger_id: str) -> None:
    report.unknown_ids.append(ledger_id)
    logger.warning("delivery outcome unknown past the dedup window: reconcile by hand",
                   extra={"sink": report.sink, "ledger_id": ledger_id})


def _lost(report: DeliveryReport, ledger_id: str) -> None:
    """Another sender holds the entry's record: its outcome is that sender's to settle."""
    report.in_flight += 1
    report.pending.add(ledger_id)
