"""The delivery service through the real Stripe adapter (the official ``stripe`` library)
against the local Stripe on 127.0.0.1: lost answers, rate limits, the 24-hour identifier
window and a negative correction end with every entry counted exactly once, or reported."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from minutemeter.adapters.sinks.stripe_sink import StripeSink
from minutemeter.domain.model import LedgerEntry
from minutemeter.local.stripe_server import LocalStripe
from minutemeter.service.delivery import DeliveryDeps, DeliveryReport, deliver_entries
from tests.support.clock import FakeClock
from tests.support.fakes import FakeDeliveryStore, FakeProfileStore
from tests.support.sinks import PROFILE, STRIPE, make_correction, make_entries

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
ACCOUNT = "6f1c2a4e-0b7d-4c55-9a0e-3f2b8d1e7c90"
CUSTOMER, METER, KEY = "cus_local_1", "minutemeter_bytes", "sk_test_local_key_123"
CLIENT_TIMEOUT = 0.5  # seconds; a stalled answer is held longer than this
STALL_SECONDS = 3.0


@dataclass
class Stripe:
    server: LocalStripe
    clock: FakeClock
    store: FakeDeliveryStore = field(default_factory=FakeDeliveryStore)
    profiles: FakeProfileStore = field(default_factory=FakeProfileStore)
    waits: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.profiles.put_profile(ACCOUNT, PROFILE, customer=CUSTOMER)
        config = replace(STRIPE, url=self.server.url, meter=METER)
        self.sink = StripeSink(config, KEY, timeout=CLIENT_TIMEOUT,
                               connect_timeout=CLIENT_TIMEOUT)

    def _sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(seconds)

    def deliver(self, entries: list[LedgerEntry]) -> DeliveryReport:
        deps = DeliveryDeps(self.store, self.profiles, self.clock, None, self._sleep)
        return deliver_entries(deps, self.sink, entries)


@pytest.fixture
def stripe() -> Iterator[Stripe]:
    clock = FakeClock(NOW)  # the server's clock too: both move together
    with LocalStripe(api_key=KEY, customers={CUSTOMER}, meters={METER},
                     clock=clock.now) as server:
        yield Stripe(server, clock)


def _entries() -> list[LedgerEntry]:
    usage = make_entries(ACCOUNT, NOW - timedelta(hours=2), [1000, 2000, 3000],
                         used_before=PROFILE.included_bytes)
    return [*usage, make_correction(usage[1], 500, used_before=PROFILE.included_bytes)]


def test_a_lost_answer_and_a_rate_limit_end_with_each_entry_counted_once(
    stripe: Stripe,
) -> None:
    # GIVEN three usage entries and a correction taking 1500 bytes back
    entries = _entries()
    # WHEN the first answer is lost after Stripe took the event (the rest of that batch is
    # not sent: RETRY), and then Stripe rate-limits once
    stripe.server.stall_next(1, STALL_SECONDS)
    first = stripe.deliver(entries)
    assert (first.delivered, first.pending) == (3, {entries[0].ledger_id})
    stripe.server.fail_next(1, 429, retry_after=5)
    stripe.clock.advance(3600)  # the next run, an hour later: inside the 24-hour window
    second = stripe.deliver(entries)
    # THEN the resend of the lost one is Stripe's duplicate, and the bill is exact
    assert (second.duplicate, second.already_delivered, second.settled) == (1, 3, True)
    assert stripe.waits[-1] == 5.0  # the Retry-After Stripe sent, on the fake clock
    assert [stripe.server.count(e.ledger_id) for e in entries] == [1, 1, 1, 1]
    assert stripe.server.sums() == {(CUSTOMER, METER): 1000 + 2000 + 3000 - 1500}
    assert stripe.deliver(entries).already_delivered == 4


def test_a_lost_answer_past_the_window_is_reported_never_resent(stripe: Stripe) -> None:
    (entry,) = _entries()[:1]
    stripe.server.stall_next(1, STALL_SECONDS)
    assert stripe.deliver([entry]).pending == {entry.ledger_id}
    stripe.clock.advance(23 * 3600)  # Stripe would now take the identifier as new
    report = stripe.deliver([entry])
    assert report.unknown_ids == [entry.ledger_id] and report.settled
    assert stripe.server.count(entry.ledger_id) == 1  # once, from the first attempt


def test_an_entry_older_than_35_days_is_reported_not_sent(stripe: Stripe) -> None:
    old = make_entries(ACCOUNT, NOW - timedelta(days=36), [100],
                       used_before=PROFILE.included_bytes)
    report = stripe.deliver(old)
    assert report.rejected_ids == [old[0].ledger_id]
    assert stripe.server.requests == 0
