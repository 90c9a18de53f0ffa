"""Bucket marks let a run skip the read of which buckets exist; they must never let a bucket be
billed twice: not on items stored before marks existed, not after a stale (eventually
consistent) read of the quota item. Run against the fakes, moto and DynamoDB Local."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from minutemeter.domain.marks import mark_key
from minutemeter.domain.model import BillingProfile, BucketRef, MinuteUsage, QuotaPlan, QuotaState
from minutemeter.domain.rating import included_total, plan_entries
from minutemeter.ports import LedgerFilter, LedgerStore
from minutemeter.service.commit import CommitContext, CommitTotals, commit_group
from tests.support.backends import Backend

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 22, 11, 0, tzinfo=UTC)
ACCOUNT = "6f1c2a4e-0b7d-4c55-9a0e-3f2b8d1e7c90"
PROFILE = BillingProfile(1000, Decimal("0.000000002"), Decimal("1.5"), "v7")


def _usage(minute: int, nbytes: int, node: str = "node-a") -> MinuteUsage:
    at = T0 + timedelta(minutes=minute, seconds=30)
    return MinuteUsage(node, ACCOUNT, T0 + timedelta(minutes=minute), nbytes, 100, 100 + nbytes,
                       at, at, 1)


def _commit(ledger: LedgerStore, *usages: MinuteUsage, run: str = "run-1") -> CommitTotals:
    return commit_group(ledger, list(usages), PROFILE, CommitContext("src", run, NOW))


def _billed(backend: Backend) -> list[tuple[int, int]]:
    return [(int((e.usage.minute - T0).total_seconds() // 60), e.usage.bytes)
            for e in backend.ledger.export(LedgerFilter(source_id="src"))]


def test_marks_round_trip_and_a_reservation_without_them_makes_them_untrusted(
    any_backend: Backend,
) -> None:
    ledger = any_backend.ledger
    plan = QuotaPlan("b1", "src", ACCOUNT, "2026-11", 0, PROFILE, "r", NOW, (_usage(3, 10),))
    marks = {mark_key("src", "node-a"): T0 + timedelta(minutes=3)}
    ledger.reserve_quota(plan, expected_version=0, new_used=included_total(plan), marks=marks)
    assert ledger.get_quota(ACCOUNT, "2026-11").marks == marks
    assert ledger.get_quota(ACCOUNT, "2026-10").marks == {}  # no item: no entry can exist
    # WHEN a reservation moves the item without marks (code from before them: a rollback)
    ledger.reserve_quota(plan, expected_version=1, new_used=included_total(plan))
    # THEN the marks it left are not trusted: every bucket is looked up again
    assert ledger.get_quota(ACCOUNT, "2026-11").marks is None


def test_a_rollback_below_marks_and_forward_again_cannot_bill_twice(
    any_backend: Backend,
) -> None:
    # GIVEN minutes 0-1 billed with marks, then code from before marks (a rollback) bills
    # minute 2: its reservation moves the version and leaves the mark at minute 1
    _commit(any_backend.ledger, _usage(0, 100), _usage(1, 100))
    quota = any_backend.ledger.get_quota(ACCOUNT, "2026-11")
    old = QuotaPlan("b-old", "src", ACCOUNT, "2026-11", quota.used_bytes, PROFILE, "old", NOW,
                    (_usage(2, 100),))
    any_backend.ledger.reserve_quota(old, expected_version=quota.version,
                                     new_used=quota.used_bytes + included_total(old))
    any_backend.ledger.write_reserved(plan_entries(old))
    # WHEN this version runs again and replays minute 2 with a new minute 3
    totals = _commit(any_backend.ledger, _usage(2, 100), _usage(3, 100), run="run-3")
    # THEN minute 2 is found (not billed twice) and each minute is billed once
    assert (totals.written, totals.replayed) == (1, 1)
    assert _billed(any_backend) == [(0, 100), (1, 100), (2, 100), (3, 100)]
    assert any_backend.ledger.get_quota(ACCOUNT, "2026-11").used_bytes == 400


def test_each_reservation_marks_the_latest_minute_of_its_source_and_node(
    any_backend: Backend,
) -> None:
    # WHEN minutes of two nodes are committed in two runs
    _commit(any_backend.ledger, _usage(0, 10), _usage(2, 10, "node-b"))
    _commit(any_backend.ledger, _usage(1, 10), run="run-2")
    # THEN each (source, node) is marked at its latest reserved minute
    assert any_backend.ledger.get_quota(ACCOUNT, "2026-11").marks == {
        mark_key("src", "node-a"): T0 + timedelta(minutes=1),
        mark_key("src", "node-b"): T0 + timedelta(minutes=2),
    }


def test_a_replayed_minute_at_or_before_the_mark_is_found_and_not_billed_again(
    any_backend: Backend,
) -> None:
    first = _commit(any_backend.ledger, _usage(0, 600), _usage(1, 300))
    again = _commit(any_backend.ledger, _usage(1, 300), _usage(2, 200), run="run-2")
    assert (first.written, again.written, again.replayed) == (2, 1, 1)
    assert _billed(any_backend) == [(0, 600), (1, 300), (2, 200)]
    assert any_backend.ledger.get_quota(ACCOUNT, "2026-11").used_bytes == 1000


def test_an_item_stored_before_marks_existed_still_looks_every_bucket_up(
    any_backend: Backend,
) -> None:
    # GIVEN a quota item and its entry as the code before marks wrote them (no marks)
    plan = QuotaPlan("b0", "src", ACCOUNT, "2026-11", 0, PROFILE, "old", NOW, (_usage(5, 400),))
    any_backend.ledger.reserve_quota(plan, expected_version=0, new_used=included_total(plan))
    any_backend.ledger.write_reserved(plan_entries(plan))
    assert any_backend.ledger.get_quota(ACCOUNT, "2026-11").marks is None
    # WHEN a run replays that minute with an earlier new one
    totals = _commit(any_backend.ledger, _usage(4, 100), _usage(5, 400))
    # THEN the old minute is a replay and the item stays without marks
    assert (totals.written, totals.replayed) == (1, 1)
    assert _billed(any_backend) == [(4, 100), (5, 400)]
    quota = any_backend.ledger.get_quota(ACCOUNT, "2026-11")
    assert (quota.used_bytes, quota.marks) == (500, None)


class _StaleFirstRead:
    """The ledger, except that eventually consistent quota reads return ``stale``."""

    def __init__(self, ledger: LedgerStore, stale: QuotaState) -> None:
        self._ledger = ledger
        self._stale = stale
        self.stale_reads = 0

    def get_quota(self, account_id: str, month: str, *, consistent: bool = True) -> QuotaState:
        if not consistent:
            self.stale_reads += 1
            return self._stale
        return self._ledger.get_quota(account_id, month, consistent=True)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)


def test_a_stale_quota_read_cannot_bill_a_written_minute_twice(any_backend: Backend) -> None:
    # GIVEN minute 0 billed, and a read that still returns the quota item from before it
    _commit(any_backend.ledger, _usage(0, 600))
    stale = _StaleFirstRead(any_backend.ledger, QuotaState(ACCOUNT, "2026-11"))
    # WHEN minute 0 comes again (a crashed run's replay) with a new minute 1
    totals = _commit(stale, _usage(0, 600), _usage(1, 300), run="run-2")
    # THEN the stale read's reservation failed, the strongly consistent retry found minute 0
    assert stale.stale_reads == 1
    assert (totals.written, totals.replayed) == (1, 1)
    assert _billed(any_backend) == [(0, 600), (1, 300)]
    assert any_backend.ledger.get_quota(ACCOUNT, "2026-11").used_bytes == 900


def test_new_minutes_need_no_bucket_lookup(any_backend: Backend) -> None:
    # GIVEN a month with billed minutes
    _commit(any_backend.ledger, _usage(0, 10))
    looked_up: list[tuple[int, bool]] = []
    ledger = any_backend.ledger

    class Watching(_StaleFirstRead):
        def existing_buckets(self, refs: Any, *, consistent: bool = True) -> set[BucketRef]:
            looked_up.extend((int((r.minute - T0).total_seconds() // 60), consistent)
                             for r in refs)
            return ledger.existing_buckets(refs, consistent=consistent)

    watched = Watching(ledger, ledger.get_quota(ACCOUNT, "2026-11"))
    # WHEN the next minutes are committed
    totals = _commit(watched, _usage(1, 10), _usage(2, 10), run="run-2")
    # THEN they are written without asking whether they exist; only the last plan's minute is
    # checked (eventually consistent) before a new plan replaces it
    assert (totals.written, looked_up) == (2, [(0, False)])
