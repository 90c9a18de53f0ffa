"""One contract for the store ports, run against the fakes, moto and DynamoDB Local.

The fakes are only trustworthy if they behave like the engines; DynamoDB Local is the proof of
the conditional-write semantics that exactly-once rests on.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from minutemeter.adapters.dynamo.base import DynamoTable
from minutemeter.adapters.dynamo.state import dynamo_state_stores
from minutemeter.domain.delivery import SinkConfig, SinkKind, SinkValue
from minutemeter.domain.errors import (
    QuotaConflictError,
    SourceNotFoundError,
    StoreError,
    UnknownSinkError,
)
from minutemeter.domain.model import (
    BillingProfile,
    BucketRef,
    Checkpoint,
    JobResult,
    JobStatus,
    MinuteUsage,
    Quarantined,
    QuotaPlan,
    ResetEvent,
    ResetPolicy,
    SourceConfig,
)
from minutemeter.domain.rating import included_total, plan_entries
from minutemeter.ports import DeliveryRecord, LedgerFilter
from tests.support.backends import Backend

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
ACCOUNT = "6f1c2a4e-0b7d-4c55-9a0e-3f2b8d1e7c90"
PROFILE = BillingProfile(1000, Decimal("0.000000002"), Decimal("1.5"), "v7")


def _usage(minute: int, nbytes: int, account: str = ACCOUNT) -> MinuteUsage:
    at = T0 + timedelta(minutes=minute, seconds=30)
    return MinuteUsage("node-a", account, T0 + timedelta(minutes=minute), nbytes, 100, 100 + nbytes,
                       at, at, 1)


def _plan(usages: tuple[MinuteUsage, ...], used_before: int = 0, batch: str = "b1") -> QuotaPlan:
    return QuotaPlan(batch, "src", ACCOUNT, "2026-11", used_before, PROFILE, "run-1", T0, usages)


def test_entries_are_write_once(any_backend: Backend) -> None:
    # GIVEN two entries written once
    entries = plan_entries(_plan((_usage(0, 600), _usage(1, 700))))
    first = any_backend.ledger.put_entries(entries)
    # WHEN the same buckets are written again, even with other values
    again = any_backend.ledger.put_entries(plan_entries(_plan((_usage(0, 1), _usage(1, 2)), 5)))
    # THEN the second write changes nothing
    assert (first.written, first.existed) == (2, 0)
    assert (again.written, again.existed) == (0, 2)
    exported = list(any_backend.ledger.export(LedgerFilter(source_id="src")))
    assert [e.usage.bytes for e in exported] == [600, 700]
    assert [e.included_bytes for e in exported] == [600, 400]
    assert exported[1].amount == Decimal(300) * Decimal("0.000000002") * Decimal("1.5")
    assert exported[0].ledger_id == entries[0].ledger_id


def test_reserved_entries_are_written_in_batches_and_rewrites_change_nothing(
    any_backend: Backend,
) -> None:
    # GIVEN the entries of a reservation with more than one batch (25) of items
    plan = _plan(tuple(_usage(m, 100 + m) for m in range(60)))
    entries = plan_entries(plan)
    # WHEN the owner and then a runner finishing the plan both write them
    assert any_backend.ledger.write_reserved(entries) == 60
    assert any_backend.ledger.write_reserved(plan_entries(plan)) == 60
    # THEN each bucket holds exactly the plan's entry
    exported = list(any_backend.ledger.export(LedgerFilter(source_id="src")))
    assert exported == entries


def test_existing_buckets_reports_only_written_ones(any_backend: Backend) -> None:
    any_backend.ledger.put_entries(plan_entries(_plan((_usage(0, 5),))))
    refs = [BucketRef("src", "node-a", ACCOUNT, T0 + timedelta(minutes=m)) for m in range(3)]
    assert any_backend.ledger.existing_buckets(refs) == {refs[0]}


def test_quota_reservation_is_a_compare_and_set(any_backend: Backend) -> None:
    ledger = any_backend.ledger
    plan = _plan((_usage(0, 600),))
    assert ledger.get_quota(ACCOUNT, "2026-11").version == 0
    ledger.reserve_quota(plan, expected_version=0, new_used=included_total(plan))
    with pytest.raises(QuotaConflictError):
        ledger.reserve_quota(plan, expected_version=0, new_used=999)
    state = ledger.get_quota(ACCOUNT, "2026-11")
    assert (state.used_bytes, state.version) == (600, 1)
    assert state.pending == plan  # the plan round-trips exactly, so anyone can finish it
    second = _plan((_usage(1, 700),), used_before=600, batch="b2")
    ledger.reserve_quota(second, expected_version=1, new_used=1000)
    with pytest.raises(QuotaConflictError):
        ledger.reserve_quota(second, expected_version=1, new_used=1000)
    assert ledger.get_quota(ACCOUNT, "2026-11").version == 2


def test_export_filters_by_account_and_minutes(any_backend: Backend) -> None:
    other = "0b8f6f3c-1d2e-4f50-8a9b-0c1d2e3f4a5b"
    any_backend.ledger.put_entries(plan_entries(_plan(tuple(_usage(m, 10) for m in range(5)))))
    any_backend.ledger.put_entries(
        plan_entries(QuotaPlan("b9", "src", other, "2026-11", 0, PROFILE, "r", T0,
                               (_usage(2, 10, other),)))
    )
    window = LedgerFilter(source_id="src", account_id=ACCOUNT, since=T0 + timedelta(minutes=1),
                          until=T0 + timedelta(minutes=3))
    assert [e.usage.minute.minute for e in any_backend.ledger.export(window)] == [1, 2]
    by_account = LedgerFilter(account_id=other)
    assert [e.usage.account_id for e in any_backend.ledger.export(by_account)] == [other]
    assert len(list(any_backend.ledger.export(LedgerFilter(since=T0 + timedelta(minutes=4))))) == 1


def test_watermark_never_moves_back(any_backend: Backend) -> None:
    state = any_backend.state
    s1 = state.sync.commit_progress("src", until=T0 + timedelta(minutes=30), node_id="node-a",
                                    baseline_taken_at=T0, at=T0, fence=None)
    s2 = state.sync.commit_progress("src", until=T0 + timedelta(minutes=15), node_id="node-a",
                                    baseline_taken_at=T0 + timedelta(minutes=1), at=T0, fence=None)
    assert s1.last_completed_until == s2.last_completed_until == T0 + timedelta(minutes=30)
    assert state.sync.get_state("src").baseline_taken_at == T0  # the first baseline stays


def test_checkpoints_never_move_back_in_time(any_backend: Backend) -> None:
    state = any_backend.state
    later = Checkpoint("node-a", ACCOUNT, 5, T0 + timedelta(minutes=2))
    earlier = Checkpoint("node-a", ACCOUNT, 900, T0 + timedelta(minutes=1))
    assert state.checkpoints.advance_checkpoints("src", [later]) == 1
    assert state.checkpoints.advance_checkpoints("src", [earlier]) == 0
    # a reset moves the value down, but only forward in time
    reset = Checkpoint("node-a", ACCOUNT, 1, T0 + timedelta(minutes=3))
    assert state.checkpoints.advance_checkpoints("src", [reset]) == 1
    assert state.checkpoints.get_checkpoints("src", "node-a", [ACCOUNT]) == {ACCOUNT: reset}
    assert state.checkpoints.get_checkpoints("src", "node-b", [ACCOUNT]) == {}


def test_sources_profiles_and_records(any_backend: Backend) -> None:
    state = any_backend.state
    with pytest.raises(SourceNotFoundError):
        state.sources.get_source("nope")
    source = SourceConfig("src", "http://127.0.0.1:1", T0, node_id="node-a", lag_seconds=90,
                          reset_policy=ResetPolicy.FROM_ZERO, clock_tolerance_seconds=60)
    state.sources.put_source(source)
    assert state.sources.get_source("src") == source
    assert [s.source_id for s in state.sources.list_sources()] == ["src"]
    state.profiles.put_profile(ACCOUNT, PROFILE)
    assert state.profiles.get_profiles([ACCOUNT, "x"]) == {ACCOUNT: PROFILE}
    quarantined = Quarantined("account_id_invalid", "2026-11-22T10:00:00Z", "nope", "{}", "d1")
    reset = ResetEvent("node-a", ACCOUNT, T0, 10, 1, ResetPolicy.SKIP, 0)
    for _ in range(2):  # idempotent
        state.records.put_records("src", quarantined=[quarantined], resets=[reset], run_id="r",
                                  at=T0, expires_at=T0 + timedelta(days=1))
    assert [r["reason"] for r in state.records.list_records("src", "quarantine", 10)] == [
        "account_id_invalid"
    ]
    assert [r["previous_bytes"] for r in state.records.list_records("src", "reset", 10)] == [10]


def test_job_results_update_sync_state(any_backend: Backend) -> None:
    state = any_backend.state
    failed = JobResult("j1", "collect", "src", T0, status=JobStatus.ERROR, error="boom",
                       finished_at=T0)
    state.sync.record_result(failed, expires_at=T0 + timedelta(days=1))
    state.sync.record_result(failed, expires_at=T0 + timedelta(days=1))
    sync = state.sync.get_state("src")
    assert (sync.consecutive_failures, sync.last_error) == (2, "boom")
    ok = JobResult("j2", "collect", "src", T0 + timedelta(minutes=1), written_minutes=3,
                   finished_at=T0 + timedelta(minutes=1))
    state.sync.record_result(ok, expires_at=T0 + timedelta(days=1))
    sync = state.sync.get_state("src")
    assert sync.consecutive_failures == 0
    assert sync.last_success_at == T0 + timedelta(minutes=1)
    assert sync.last_job is not None and sync.last_job["written_minutes"] == 3
    assert [j["job_id"] for j in state.sync.list_jobs("src", 5)] == ["j2", "j1"]


def test_engine_failures_surface_as_store_errors(dynamo: Backend) -> None:
    # GIVEN adapters on a table that does not exist (a misconfigured table name)
    missing = dynamo_state_stores(DynamoTable(dynamo.client, "no-such-table"))
    # THEN every call fails with the typed error, naming the operation and the table
    with pytest.raises(StoreError, match="get_item on no-such-table failed: ResourceNotFound"):
        missing.sync.get_state("src")
    with pytest.raises(StoreError, match="no-such-table"):
        missing.sources.list_sources()


def test_profile_customers_are_kept_beside_the_profile(any_backend: Backend) -> None:
    profiles = any_backend.state.profiles
    other = "0b8f6f3c-1d2e-4f50-8a9b-0c1d2e3f4a5b"
    profiles.put_profile(ACCOUNT, PROFILE, customer="cus_123")
    profiles.put_profile(other, PROFILE)
    assert profiles.get_customers([ACCOUNT, other, "x"]) == {ACCOUNT: "cus_123"}
    # a later put without --customer keeps it; with one, replaces it
    cheaper = BillingProfile(5, Decimal("0.000000001"), Decimal("1"), "v8")
    profiles.put_profile(ACCOUNT, cheaper)
    assert profiles.get_customers([ACCOUNT]) == {ACCOUNT: "cus_123"}
    assert profiles.get_profiles([ACCOUNT]) == {ACCOUNT: cheaper}
    profiles.put_profile(ACCOUNT, cheaper, customer="sub_9")
    assert profiles.get_customers([ACCOUNT]) == {ACCOUNT: "sub_9"}
    assert profiles.get_customers([]) == {}


def test_delivery_records_are_claimed_and_settled_on_their_attempts(
    any_backend: Backend,
) -> None:
    store = any_backend.state.deliveries
    sink = SinkConfig("billing", SinkKind.STRIPE, "https://api.stripe.com", "bytes_out",
                      SinkValue.BILLABLE, api_key_secret="arn:aws:secretsmanager:us-east-1:"
                      "123456789012:secret:stripe-AbCdEf")
    lago = SinkConfig("lago", SinkKind.LAGO, "http://127.0.0.1:3000", "bytes", SinkValue.BYTES,
                      api_key_env="LAGO_API_KEY")
    store.put_sink(sink)
    store.put_sink(lago)
    assert store.get_sink("billing") == sink
    assert store.list_sinks() == [sink, lago]
    with pytest.raises(UnknownSinkError):
        store.get_sink("nope")
    first = DeliveryRecord("billing", "L1", "sending", 1, T0, T0)
    assert store.claim(first, expected_attempts=None)
    assert not store.claim(first, expected_attempts=None)  # another sender's
    assert store.get_records("billing", ["L1", "L2"]) == {"L1": first}
    assert store.get_records("lago", ["L1"]) == {}  # per sink
    # a resend: fenced on the attempts read
    second = replace(first, attempts=2)
    assert not store.claim(second, expected_attempts=2)
    assert store.claim(second, expected_attempts=1)
    assert not store.claim(replace(first, attempts=3), expected_attempts=1)
    # the settle of a superseded attempt changes nothing; the current one's does
    store.settle(replace(first, status="delivered"))
    assert store.get_records("billing", ["L1"])["L1"] == second
    retry = replace(second, maybe_sent_at=None, detail="rate_limited")
    store.settle(retry)
    assert store.get_records("billing", ["L1"])["L1"] == retry
    done = replace(retry, status="delivered", detail="accepted")
    store.settle(done)
    assert store.get_records("billing", ["L1"])["L1"] == done
    # a settled record is never claimed again, whatever attempts a sender read
    assert not store.claim(replace(done, status="sending", attempts=3), expected_attempts=2)
    assert store.get_records("billing", ["L1"])["L1"] == done
