"""A deliverer killed before or after every single write of a clean delivery run, and after the
billing system took a batch whose answers it never read. GIVEN the entries of two accounts and a
correction, WHEN a run dies at each point and a later run picks up, THEN no entry is counted
twice by the billing system: inside its dedup window every entry ends delivered exactly once;
past it each ends delivered once, or is reported unknown (counted at most once)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from minutemeter.domain.delivery import DeliveryEvent, SendResult
from minutemeter.domain.model import LedgerEntry
from minutemeter.ports import DeliveryRecord
from minutemeter.service.delivery import DeliveryDeps, deliver_entries
from tests.support.clock import FakeClock
from tests.support.fakes import FakeDeliveryStore, FakeProfileStore
from tests.support.sinks import PROFILE, STRIPE, FakeSink, make_correction, make_entries

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
ACCOUNTS = ["6f1c2a4e-0b7d-4c55-9a0e-3f2b8d1e7c90", "0b8f6f3c-1d2e-4f50-8a9b-0c1d2e3f4a5b"]


class Killed(BaseException):
    """The deliverer dies here."""


class CrashingStore(FakeDeliveryStore):
    """Dies before (``after=False``) or after the ``at``-th write (claim or settle)."""

    def __init__(self, at: int | None = None, *, after: bool = False) -> None:
        super().__init__()
        self.at, self.after, self.count = at, after, 0

    def _write(self) -> None:
        self.count += 1
        if self.count == self.at and not self.after:
            raise Killed(f"before write {self.count}")

    def _landed(self) -> None:
        if self.count == self.at and self.after:
            raise Killed(f"after write {self.count}")

    def claim(self, record: DeliveryRecord, *, expected_attempts: int | None) -> bool:
        self._write()
        won = super().claim(record, expected_attempts=expected_attempts)
        self._landed()
        return won

    def settle(self, record: DeliveryRecord) -> None:
        self._write()
        super().settle(record)
        self._landed()


class AnswerLostSink(FakeSink):
    """The system takes the ``at``-th batch, then the deliverer dies before reading answers."""

    def __init__(self, clock: FakeClock, at: int | None) -> None:
        super().__init__(STRIPE, clock)
        self.at, self.batches = at, 0

    def send(self, events: Sequence[DeliveryEvent]) -> list[SendResult]:
        results = super().send(events)
        self.batches += 1
        if self.batches == self.at:
            raise Killed("answers lost")
        return results


@dataclass
class Run:
    clock: FakeClock
    store: FakeDeliveryStore
    profiles: FakeProfileStore
    sink: FakeSink

    def deliver(self, entries: list[LedgerEntry]) -> None:
        deps = DeliveryDeps(self.store, self.profiles, self.clock, None, self.clock.advance)
        deliver_entries(deps, self.sink, entries)


def _entries() -> list[LedgerEntry]:
    found: list[LedgerEntry] = []
    for account in ACCOUNTS:
        found += make_entries(account, T0, [100, 200, 300], used_before=PROFILE.included_bytes)
    return [*found, make_correction(found[0], 40, used_before=PROFILE.included_bytes)]


def _run(store: FakeDeliveryStore, sink: FakeSink | None = None) -> Run:
    clock = FakeClock(T0 + timedelta(hours=1))
    profiles = FakeProfileStore()
    for number, account in enumerate(ACCOUNTS):
        profiles.put_profile(account, PROFILE, customer=f"cus_{number}")
    return Run(clock, store, profiles, sink or FakeSink(STRIPE, clock))


def _clean_writes() -> int:
    run = _run(CrashingStore())
    run.deliver(_entries())
    assert isinstance(run.store, CrashingStore)
    return run.store.count


WRITES = 2 * len(_entries())  # a claim and a settle per entry


def test_a_clean_run_writes_a_claim_and_a_settle_per_entry() -> None:
    assert _clean_writes() == WRITES


@pytest.mark.parametrize("later", [timedelta(hours=1), timedelta(hours=23)])
@pytest.mark.parametrize("after", [False, True])
@pytest.mark.parametrize("at", range(1, WRITES + 1))
def test_killed_at_any_write_never_bills_twice(at: int, after: bool, later: timedelta) -> None:
    entries = _entries()
    store = CrashingStore(at, after=after)
    run = _run(store)
    with pytest.raises(Killed):
        run.deliver(entries)
    store.at = None  # the next run lives
    run.clock.advance(later.total_seconds())
    run.deliver(entries)
    _check(run, entries, inside_window=later < timedelta(hours=23))


@pytest.mark.parametrize("later", [timedelta(hours=1), timedelta(hours=23)])
def test_killed_after_the_system_took_the_batch_never_bills_twice(later: timedelta) -> None:
    entries = _entries()
    clock = FakeClock(T0 + timedelta(hours=1))
    run = _run(FakeDeliveryStore(), AnswerLostSink(clock, at=1))
    run.clock = clock
    with pytest.raises(Killed):
        run.deliver(entries)
    run.clock.advance(later.total_seconds())
    run.deliver(entries)
    _check(run, entries, inside_window=later < timedelta(hours=23))


def _check(run: Run, entries: list[LedgerEntry], *, inside_window: bool) -> None:
    records = run.store.get_records(STRIPE.name, [e.ledger_id for e in entries])
    for entry in entries:
        counted = run.sink.times_counted(entry.ledger_id)
        status = records[entry.ledger_id].status
        if inside_window:
            assert (counted, status) == (1, "delivered"), entry.ledger_id
        else:  # delivered once, or reported for a person (it may or may not have landed)
            assert (counted, status) in {(1, "delivered"), (1, "unknown"), (0, "unknown")}, (
                entry.ledger_id, counted, status)
