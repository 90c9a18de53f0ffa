"""The delivery decisions (service/delivery.py) on fakes: every branch, crashes, races, a sink
down for days, corrections. The billing system is tests.support.sinks.FakeSink: what it
``counted`` is the bill, and every test checks that no entry is counted twice."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from minutemeter.domain.delivery import (
    OUTSIDE_STRIPE_WINDOW,
    DeliveryEvent,
    SendResult,
    SinkConfig,
    SinkValue,
)
from minutemeter.domain.model import LedgerEntry, QuotaPlan
from minutemeter.domain.rating import included_total
from minutemeter.ports import DeliveryRecord
from minutemeter.service.delivery import (
    DEDUP_SAFETY_MARGIN,
    MAX_RETRY_ROUNDS,
    DeliveryDeps,
    DeliveryReport,
    deliver_entries,
)
from minutemeter.service.delivery_backfill import default_since, deliver_since
from tests.support.clock import FakeBudget, FakeClock
from tests.support.fakes import (
    FakeDeliveryStore,
    FakeLedgerStore,
    FakeProfileStore,
    FakeSourceStore,
)
from tests.support.sinks import (
    ACCEPT_THEN_UNKNOWN,
    LAGO,
    PROFILE,
    REJECT,
    RETRY,
    STRIPE,
    UNKNOWN_NOT_TAKEN,
    FakeSink,
    SinkCrash,
    make_correction,
    make_entries,
)

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
ACCOUNT = "6f1c2a4e-0b7d-4c55-9a0e-3f2b8d1e7c90"
OTHER = "0b8f6f3c-1d2e-4f50-8a9b-0c1d2e3f4a5b"
DAY = 86_400.0


@dataclass
class World:
    clock: FakeClock
    store: FakeDeliveryStore
    profiles: FakeProfileStore
    sink: FakeSink
    waits: list[float] = field(default_factory=list)
    budget: FakeBudget | None = None

    @property
    def deps(self) -> DeliveryDeps:
        return DeliveryDeps(self.store, self.profiles, self.clock, self.budget, self._sleep)

    def _sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(seconds)

    def deliver(self, entries: Sequence[LedgerEntry]) -> DeliveryReport:
        return deliver_entries(self.deps, self.sink, entries)

    def record(self, entry: LedgerEntry) -> DeliveryRecord:
        return self.store.records[(self.sink.config.name, entry.ledger_id)]


def _world(config: SinkConfig = STRIPE, *, now: datetime = T0 + timedelta(hours=1),
           **sink: object) -> World:
    clock = FakeClock(now)
    profiles = FakeProfileStore()
    profiles.put_profile(ACCOUNT, PROFILE, customer="cus_A")
    return World(clock, FakeDeliveryStore(), profiles, FakeSink(config, clock, **sink))  # type: ignore[arg-type]


def _billable(sizes: Sequence[int], start: datetime = T0, account: str = ACCOUNT) -> list[
        LedgerEntry]:
    """Entries past the included quota: every byte billable."""
    return make_entries(account, start, sizes, used_before=PROFILE.included_bytes)


def _counted_once(world: World, entries: Sequence[LedgerEntry]) -> None:
    for entry in entries:
        assert world.sink.times_counted(entry.ledger_id) == 1, entry.ledger_id


# -- the plain path ---------------------------------------------------------------------------
def test_each_entry_is_delivered_once_and_a_rerun_sends_nothing() -> None:
    world = _world()
    entries = _billable([100, 200, 300])
    report = world.deliver(entries)
    assert (report.delivered, report.undelivered, report.settled) == (3, 0, True)
    _counted_once(world, entries)
    assert [e.value for e in world.sink.counted] == [100, 200, 300]
    assert {world.record(e).status for e in entries} == {"delivered"}
    assert {world.record(e).attempts for e in entries} == {1}
    again = world.deliver(entries)
    assert (again.delivered, again.already_delivered, world.sink.requests) == (0, 3, 3)


def test_the_event_carries_the_customer_the_minute_and_the_sinks_value() -> None:
    world = _world(LAGO)  # value: bytes (the billing system applies its own free tier)
    (entry,) = make_entries(ACCOUNT, T0, [600])  # all of it included: billable 0
    world.deliver([entry])
    (event,) = world.sink.counted
    assert (event.ledger_id, event.customer, event.timestamp, event.value, event.kind) == (
        entry.ledger_id, "cus_A", T0, 600, "usage")


def test_a_zero_value_sends_nothing_and_leaves_no_record() -> None:
    world = _world()  # value: billable; the first 1000 bytes of the month are included
    entries = make_entries(ACCOUNT, T0, [600, 700])
    report = world.deliver(entries)
    assert (report.skipped_zero, report.delivered) == (1, 1)
    assert [e.value for e in world.sink.counted] == [300]
    assert (world.sink.config.name, entries[0].ledger_id) not in world.store.records
    assert report.settled


def test_an_account_without_a_customer_is_reported_and_delivered_once_it_has_one() -> None:
    world = _world()
    entries = _billable([100], account=OTHER) + _billable([50])
    report = world.deliver(entries)
    assert (report.no_customer, report.delivered, report.undelivered) == (1, 1, 1)
    assert report.to_json()["no_customer_accounts"] == [OTHER]
    assert not report.settled and report.pending == set()  # not the stream's to retry
    assert (STRIPE.name, entries[0].ledger_id) not in world.store.records
    world.profiles.put_profile(OTHER, PROFILE, customer="cus_B")
    later = world.deliver(entries)
    assert (later.delivered, later.already_delivered, later.settled) == (1, 1, True)
    _counted_once(world, entries)
    assert world.sink.counted[-1].customer == "cus_B"


def test_a_profile_put_without_customer_keeps_the_one_it_has() -> None:
    profiles = FakeProfileStore()
    profiles.put_profile(ACCOUNT, PROFILE, customer="cus_A")
    profiles.put_profile(ACCOUNT, replace(PROFILE, included_bytes=5))
    assert profiles.get_customers([ACCOUNT, OTHER]) == {ACCOUNT: "cus_A"}


# -- answers ----------------------------------------------------------------------------------
def test_a_rejected_entry_is_settled_reported_and_never_resent() -> None:
    world = _world()
    entries = _billable([100, 200])
    world.sink.fail(entries[0].ledger_id, REJECT)
    report = world.deliver(entries)
    assert report.rejected_ids == [entries[0].ledger_id] and report.delivered == 1
    assert report.settled  # rejected is settled: reported, nothing to retry
    assert (world.record(entries[0]).status, world.record(entries[0]).detail) == (
        "rejected", "invalid_request")
    again = world.deliver(entries)
    assert again.rejected_ids == [entries[0].ledger_id] and world.sink.requests == 2


def test_a_rate_limited_entry_is_resent_after_the_wait_the_system_asked_for() -> None:
    world = _world(retry_after=7.0)
    entries = _billable([100, 200])
    world.sink.fail(entries[1].ledger_id, RETRY)
    report = world.deliver(entries)
    assert (report.delivered, report.settled) == (2, True)
    assert world.waits == [7.0]
    assert world.record(entries[1]).attempts == 2  # one refused attempt, one taken
    _counted_once(world, entries)


def test_a_wait_past_the_budget_leaves_the_entry_for_the_next_run() -> None:
    world = _world()
    world.budget = FakeBudget(21.0)  # a 2 s wait would leave less than the 20 s margin
    (entry,) = _billable([100])
    world.sink.fail(entry.ledger_id, RETRY)
    report = world.deliver([entry])
    assert (report.pending, world.waits) == ({entry.ledger_id}, [])
    record = world.record(entry)
    assert (record.status, record.maybe_sent_at) == ("sending", None)  # certainly not sent
    world.budget = None
    world.clock.advance(3 * DAY)  # no dedup window matters: nothing may have landed
    assert world.deliver([entry]).delivered == 1
    _counted_once(world, [entry])


def test_a_sink_that_stays_down_is_retried_a_bounded_number_of_times() -> None:
    world = _world()
    world.sink.down = True
    entries = _billable([100, 200])
    report = world.deliver(entries)
    assert report.pending == {e.ledger_id for e in entries}
    assert world.waits == [1.0 * 2**r for r in range(MAX_RETRY_ROUNDS)]
    assert {world.record(e).maybe_sent_at for e in entries} == {None}
    assert world.sink.counted == []


def test_a_lost_answer_is_resent_inside_the_window_and_the_copy_dropped() -> None:
    world = _world()
    (entry,) = _billable([100])
    world.sink.fail(entry.ledger_id, ACCEPT_THEN_UNKNOWN)
    first = world.deliver([entry])
    assert (first.pending, first.in_flight, world.record(entry).status) == (
        {entry.ledger_id}, 1, "sending")
    world.clock.advance(22 * 3600)
    second = world.deliver([entry])
    assert (second.duplicate, second.settled, world.record(entry).status) == (1, True,
                                                                              "delivered")
    assert world.sink.requests == 2
    _counted_once(world, [entry])


def test_a_lost_answer_past_the_window_is_unknown_and_never_resent() -> None:
    world = _world()
    (entry,) = _billable([100])
    world.sink.fail(entry.ledger_id, ACCEPT_THEN_UNKNOWN)
    world.deliver([entry])
    world.clock.advance((timedelta(hours=24) - DEDUP_SAFETY_MARGIN).total_seconds())
    report = world.deliver([entry])
    assert (report.unknown_ids, report.settled, world.record(entry).status) == (
        [entry.ledger_id], True, "unknown")
    assert world.deliver([entry]).unknown_ids == [entry.ledger_id]  # reported each run
    assert world.sink.requests == 1
    _counted_once(world, [entry])


def test_a_5xx_then_a_resend_inside_the_window_counts_once() -> None:
    world = _world()
    (entry,) = _billable([100])
    world.sink.fail(entry.ledger_id, UNKNOWN_NOT_TAKEN)
    assert world.deliver([entry]).pending == {entry.ledger_id}
    assert world.deliver([entry]).delivered == 1
    _counted_once(world, [entry])
    assert world.record(entry).attempts == 2


# -- a system that can be asked (Lago) ----------------------------------------------------------
def test_a_system_that_has_the_event_is_asked_not_sent_to_again() -> None:
    world = _world(LAGO, dedup_window=None, can_lookup=True)
    (entry,) = make_entries(ACCOUNT, T0, [100])
    world.sink.fail(entry.ledger_id, ACCEPT_THEN_UNKNOWN)
    world.deliver([entry])
    world.clock.advance(5 * DAY)
    report = world.deliver([entry])
    assert (report.duplicate, world.sink.requests, world.record(entry).detail) == (1, 1, "found")
    _counted_once(world, [entry])


def test_a_system_without_the_event_gets_it_again_days_later() -> None:
    world = _world(LAGO, dedup_window=None, can_lookup=True)
    (entry,) = make_entries(ACCOUNT, T0, [100])
    world.sink.fail(entry.ledger_id, UNKNOWN_NOT_TAKEN)
    world.deliver([entry])
    world.clock.advance(5 * DAY)
    assert world.deliver([entry]).delivered == 1
    _counted_once(world, [entry])


# -- a crash between the claim and the send -----------------------------------------------------
@pytest.mark.parametrize(("later", "delivered"), [(timedelta(hours=1), True),
                                                  (timedelta(hours=23), False)])
def test_a_crash_after_the_claim_is_resent_only_inside_the_window(
    later: timedelta, delivered: bool,
) -> None:
    world = _world()
    entries = _billable([100, 200])
    world.sink.crash_before.add(entries[1].ledger_id)
    with pytest.raises(SinkCrash):
        world.deliver(entries)
    assert world.record(entries[1]).maybe_sent_at == world.clock.now()
    assert world.record(entries[0]).status == "sending"  # sent, never settled
    world.clock.advance(later.total_seconds())
    report = world.deliver(entries)
    if delivered:
        assert (report.duplicate, report.delivered, report.settled) == (1, 1, True)
        _counted_once(world, entries)
    else:  # may have been sent: reported for reconcile, never resent blindly
        assert report.unknown_ids == [e.ledger_id for e in entries]
        assert [e.ledger_id for e in world.sink.counted] == [entries[0].ledger_id]


# -- Stripe's timestamp window ------------------------------------------------------------------
def test_an_entry_older_than_35_days_is_rejected_without_sending_it() -> None:
    world = _world(now=T0 + timedelta(days=35, minutes=1))
    old, recent = _billable([100]), _billable([200], start=T0 + timedelta(days=30))
    report = world.deliver(old + recent)
    assert report.rejected_ids == [old[0].ledger_id] and report.delivered == 1
    assert world.record(old[0]).detail == OUTSIDE_STRIPE_WINDOW
    assert world.sink.requests == 1 and report.settled


def test_an_entry_ahead_of_the_window_waits() -> None:
    world = _world(now=T0 - timedelta(minutes=10))
    (entry,) = _billable([100])
    assert world.deliver([entry]).pending == {entry.ledger_id}
    assert (STRIPE.name, entry.ledger_id) not in world.store.records
    world.clock.advance(600)
    assert world.deliver([entry]).delivered == 1


def test_an_attempt_that_aged_past_35_days_is_unknown_not_rejected() -> None:
    world = _world(now=T0 + timedelta(days=35) - timedelta(minutes=30))
    (entry,) = _billable([100])
    world.sink.fail(entry.ledger_id, UNKNOWN_NOT_TAKEN)
    world.deliver([entry])
    world.clock.advance(3600)  # inside the dedup window, but now too old for Stripe
    report = world.deliver([entry])
    assert report.unknown_ids == [entry.ledger_id]
    assert world.record(entry).detail == OUTSIDE_STRIPE_WINDOW


def test_a_lago_sink_has_no_timestamp_window() -> None:
    world = _world(LAGO, now=T0 + timedelta(days=90), dedup_window=None, can_lookup=True)
    assert world.deliver(make_entries(ACCOUNT, T0, [100])).delivered == 1


# -- two senders --------------------------------------------------------------------------------
class _RacingStore(FakeDeliveryStore):
    """Runs ``before_first_claim`` once, just before the first claim (another sender's whole
    delivery between this one's read and its claim)."""

    def __init__(self) -> None:
        super().__init__()
        self.before_first_claim: list[object] = []

    def claim(self, record: DeliveryRecord, *, expected_attempts: int | None) -> bool:
        while self.before_first_claim:
            step = self.before_first_claim.pop()
            assert callable(step)
            step()
        return super().claim(record, expected_attempts=expected_attempts)


def test_two_senders_claiming_at_once_send_each_entry_once() -> None:
    world = _world()
    store = _RacingStore()
    world.store = store
    entries = _billable([100, 200])
    other = replace(world)
    reports: list[DeliveryReport] = []
    store.before_first_claim.append(lambda: reports.append(other.deliver(entries)))
    mine = world.deliver(entries)
    assert reports[0].delivered == 2
    assert (mine.delivered, mine.in_flight, sorted(mine.pending)) == (
        0, 2, sorted(e.ledger_id for e in entries))
    assert world.sink.requests == 2
    _counted_once(world, entries)


class _SlowSink(FakeSink):
    """Runs ``during_send`` once, after the claims and before the events reach the system."""

    during_send: list[object]

    def send(self, events: Sequence[DeliveryEvent]) -> list[SendResult]:
        while self.during_send:
            step = self.during_send.pop()
            assert callable(step)
            step()
        return super().send(events)


def test_a_resend_while_the_first_send_is_in_flight_is_fenced_and_deduplicated() -> None:
    clock = FakeClock(T0 + timedelta(hours=1))
    sink = _SlowSink(STRIPE, clock)
    sink.during_send = []
    world = _world()
    world.clock, world.sink = clock, sink
    entries = _billable([100])
    reports: list[DeliveryReport] = []
    sink.during_send.append(lambda: reports.append(world.deliver(entries)))
    mine = world.deliver(entries)
    # the second sender saw "sending", resent inside the window (attempt 2) and settled it;
    # the first one's copy was dropped as a duplicate and its settle of attempt 1 refused
    assert reports[0].delivered == 1 and mine.duplicate == 1
    assert (world.record(entries[0]).attempts, world.record(entries[0]).status) == (
        2, "delivered")
    _counted_once(world, entries)


def test_concurrent_threads_deliver_each_entry_exactly_once() -> None:
    world = _world(now=T0 + timedelta(hours=3))
    entries = _billable(list(range(1, 121)))
    barrier = threading.Barrier(4)
    reports: list[DeliveryReport] = []

    def run() -> None:
        barrier.wait()
        reports.append(world.deliver(entries))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _counted_once(world, entries)
    final = world.deliver(entries)
    assert (final.already_delivered, final.settled) == (120, True)


# -- a sink down for days, then the backfill ------------------------------------------------------
def _commit(ledger: FakeLedgerStore, entries: list[LedgerEntry], used_before: int) -> None:
    """Entries as the collector commits them: reservation (lists the month), then entries."""
    first = entries[0]
    plan = QuotaPlan(first.batch_id, first.source_id, first.usage.account_id,
                     first.quota_month, used_before, PROFILE, "run-1", first.collected_at,
                     tuple(e.usage for e in entries))
    state = ledger.get_quota(plan.account_id, plan.month)
    ledger.reserve_quota(plan, expected_version=state.version,
                         new_used=used_before + included_total(plan))
    ledger.write_reserved(entries)


def test_a_sink_down_for_three_days_then_the_backfill_delivers_each_entry_once() -> None:
    from minutemeter.domain.model import SourceConfig

    start = datetime(2026, 11, 30, 23, 50, tzinfo=UTC)  # across a month's end
    world = _world(now=start + timedelta(minutes=30))
    ledger, sources = FakeLedgerStore(), FakeSourceStore()
    sources.put_source(SourceConfig("src", "http://127.0.0.1:1", start))
    november = _billable([100] * 10, start=start)
    december = make_entries(ACCOUNT, datetime(2026, 12, 1, tzinfo=UTC), [50] * 10,
                            used_before=PROFILE.included_bytes)
    _commit(ledger, november, PROFILE.included_bytes)
    _commit(ledger, december, PROFILE.included_bytes)
    world.sink.down = True
    for _ in range(3):  # the stream's attempts, a day apart; the records expire from it
        assert world.deliver(november + december).undelivered == 20
        world.clock.advance(DAY)
    world.sink.down = False
    since = default_since(world.clock.now())
    assert since == datetime(2026, 11, 1, tzinfo=UTC)
    report = deliver_since(world.deps, ledger, sources, world.sink, since)
    assert (report.delivered, report.settled) == (20, True)
    _counted_once(world, november + december)
    assert world.sink.total() == 1500
    again = deliver_since(world.deps, ledger, sources, world.sink, since)
    assert (again.already_delivered, world.sink.requests) == (20, 20)


# -- corrections --------------------------------------------------------------------------------
@pytest.mark.parametrize("config", [STRIPE, replace(LAGO, value=SinkValue.BILLABLE)])
def test_a_correction_is_delivered_as_a_negative_event(config: SinkConfig) -> None:
    world = _world(config)
    (entry,) = _billable([1000])
    correction = make_correction(entry, 400, used_before=PROFILE.included_bytes)
    assert (correction.kind, correction.billable_bytes) == ("correction", -600)
    world.deliver([entry])
    report = world.deliver([entry, correction])
    assert (report.delivered, report.already_delivered) == (1, 1)
    sent = world.sink.counted[-1]
    assert (sent.value, sent.kind, sent.corrects) == (-600, "correction", entry.ledger_id)
    assert world.sink.total() == 400


def test_the_report_lists_ids_and_counts() -> None:
    world = _world()
    entries = _billable([100, 200, 300])
    world.sink.fail(entries[0].ledger_id, REJECT)
    document = world.deliver(entries).to_json()
    assert document["rejected_ids"] == [entries[0].ledger_id]
    assert {k: document[k] for k in ("delivered", "rejected", "unknown", "undelivered",
                                     "skipped_zero", "no_customer", "duplicate")} == {
        "delivered": 2, "rejected": 1, "unknown": 0, "undelivered": 0, "skipped_zero": 0,
        "no_customer": 0, "duplicate": 0}


@pytest.mark.parametrize(("now", "since"), [
    (datetime(2026, 3, 15, 12, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)),
    (datetime(2026, 1, 1, 0, 0, tzinfo=UTC), datetime(2025, 12, 1, tzinfo=UTC)),
    (datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)),
])
def test_the_backfill_starts_at_the_previous_month(now: datetime, since: datetime) -> None:
    assert default_since(now) == since

