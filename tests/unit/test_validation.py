"""Sample validation: every bad input is quarantined with a reason; good samples survive."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from minutemeter.domain.model import RawSnapshot, Sample, Window
from minutemeter.domain.validation import SampleRules, ValidationResult, validate_snapshots

SINCE = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
UNTIL = datetime(2026, 11, 22, 10, 10, tzinfo=UTC)
A = "6f1c2a4e-0b7d-4c55-9a0e-3f2b8d1e7c90"
B = "0a7f3e55-1c2d-4e6f-8a9b-0c1d2e3f4a5b"
RULES = SampleRules(
    window=Window(SINCE, UNTIL),
    now=datetime(2026, 11, 22, 10, 12, tzinfo=UTC),
    tolerance=timedelta(seconds=30),
    max_counter=10**15,
)


def snap(taken_at: object, *samples: object) -> RawSnapshot:
    return RawSnapshot(taken_at=taken_at, samples=tuple(samples))


def s(account: object = A, total: object = 100) -> dict[str, object]:
    return {"account_id": account, "total_bytes": total}


def reasons(result: ValidationResult) -> list[str]:
    return [q.reason for q in result.quarantined]


def test_good_snapshot_becomes_typed_samples() -> None:
    result = validate_snapshots([snap("2026-11-22T10:00:15Z", s(A, 5), s(B, 0))], RULES)

    taken = datetime(2026, 11, 22, 10, 0, 15, tzinfo=UTC)
    assert result.quarantined == []
    assert len(result.snapshots) == 1
    assert result.snapshots[0].taken_at == taken
    assert result.snapshots[0].samples == (Sample(A, 5, taken), Sample(B, 0, taken))
    assert result.last_taken_at == taken


# --- snapshot-level reasons: every sample of the snapshot is quarantined ----------------------


@pytest.mark.parametrize(
    ("taken_at", "reason"),
    [
        ("not a time", "taken_at_invalid"),
        (1732269615, "taken_at_invalid"),
        (None, "taken_at_invalid"),
        ("2026-11-22T10:00:15", "taken_at_invalid"),
        ("2026-11-22T10:12:30.000001Z", "taken_at_beyond_clock_tolerance"),
        ("2026-11-23T00:00:00Z", "taken_at_beyond_clock_tolerance"),
        ("2026-11-22T09:59:59.999999Z", "taken_at_outside_window"),
        ("2026-11-22T10:10:00Z", "taken_at_outside_window"),  # until is exclusive
        ("2026-11-22T10:12:30Z", "taken_at_outside_window"),  # within tolerance, past until
    ],
)
def test_snapshot_time_reasons(taken_at: object, reason: str) -> None:
    result = validate_snapshots([snap(taken_at, s(A), s(B))], RULES)

    assert result.snapshots == []
    assert reasons(result) == [reason, reason]
    assert result.last_taken_at is None


def test_window_edges_since_inclusive_until_exclusive() -> None:
    result = validate_snapshots(
        [
            snap("2026-11-22T10:00:00Z", s(A, 1)),
            snap("2026-11-22T10:09:59.999999Z", s(A, 2)),
            snap("2026-11-22T10:10:00Z", s(A, 3)),
        ],
        RULES,
    )

    assert [snapshot.taken_at for snapshot in result.snapshots] == [
        SINCE,
        UNTIL - timedelta(microseconds=1),
    ]
    assert reasons(result) == ["taken_at_outside_window"]


def test_offset_times_are_checked_in_utc() -> None:
    # 15:30:00+05:30 is 10:00:00Z: the first instant of the window
    result = validate_snapshots([snap("2026-11-22T15:30:00+05:30", s(A))], RULES)

    assert result.snapshots[0].taken_at == SINCE
    assert result.quarantined == []


def test_duplicated_and_out_of_order_snapshots() -> None:
    result = validate_snapshots(
        [
            snap("2026-11-22T10:01:00Z", s(A, 10)),
            snap("2026-11-22T10:01:00Z", s(A, 11)),
            snap("2026-11-22T10:00:30Z", s(A, 12)),
            snap("2026-11-22T10:02:00Z", s(A, 13)),
        ],
        RULES,
    )

    assert [sn.samples[0].total_bytes for sn in result.snapshots] == [10, 13]
    assert reasons(result) == ["snapshot_duplicated", "snapshot_out_of_order"]
    assert result.last_taken_at == datetime(2026, 11, 22, 10, 2, tzinfo=UTC)


def test_ordering_state_is_carried_across_calls_via_result() -> None:
    # GIVEN page 1 ending at 10:05
    result = validate_snapshots([snap("2026-11-22T10:05:00Z", s(A, 1))], RULES)

    # WHEN page 2 repeats 10:05, goes back to 10:04 and then advances, into the same result
    returned = validate_snapshots(
        [
            snap("2026-11-22T10:05:00Z", s(A, 1)),
            snap("2026-11-22T10:04:00Z", s(A, 1)),
            snap("2026-11-22T10:06:00Z", s(A, 2)),
        ],
        RULES,
        result,
    )

    # THEN the same object accumulates both pages and the ordering spans them
    assert returned is result
    assert len(result.snapshots) == 2
    assert reasons(result) == ["snapshot_duplicated", "snapshot_out_of_order"]


def test_a_fresh_call_does_not_remember_earlier_calls() -> None:
    validate_snapshots([snap("2026-11-22T10:05:00Z", s(A, 1))], RULES)

    result = validate_snapshots([snap("2026-11-22T10:04:00Z", s(A, 1))], RULES)

    assert result.quarantined == []


# --- sample-level reasons: only the bad sample goes ---------------------------------------------


@pytest.mark.parametrize(
    ("sample", "reason"),
    [
        ([A, 1], "sample_not_object"),
        ("x", "sample_not_object"),
        (None, "sample_not_object"),
        (s("not-a-uuid"), "account_id_invalid"),
        (s("{" + A + "}"), "account_id_invalid"),
        (s(A.replace("-", "")), "account_id_invalid"),
        (s(A + "\n"), "account_id_invalid"),
        (s(A[:-1] + "g"), "account_id_invalid"),
        (s(12345), "account_id_invalid"),
        ({"total_bytes": 1}, "account_id_invalid"),
        (s(B, 1.0), "total_bytes_not_integer"),
        (s(B, "100"), "total_bytes_not_integer"),
        (s(B, True), "total_bytes_not_integer"),
        (s(B, None), "total_bytes_not_integer"),
        ({"account_id": B}, "total_bytes_not_integer"),
        (s(B, -1), "total_bytes_negative"),
        (s(B, 10**15 + 1), "total_bytes_too_large"),
        (s(B, 2**64), "total_bytes_too_large"),
    ],
)
def test_a_bad_sample_is_quarantined_and_the_good_ones_kept(sample: object, reason: str) -> None:
    result = validate_snapshots([snap("2026-11-22T10:00:15Z", s(A, 7), sample)], RULES)

    assert reasons(result) == [reason]
    assert len(result.snapshots) == 1
    assert [x.account_id for x in result.snapshots[0].samples] == [A]
    assert result.quarantined[0].taken_at == "2026-11-22T10:00:15Z"


def test_counter_at_the_bounds_is_accepted() -> None:
    result = validate_snapshots([snap("2026-11-22T10:00:15Z", s(A, 0), s(B, 10**15))], RULES)

    assert [x.total_bytes for x in result.snapshots[0].samples] == [0, 10**15]


def test_uppercase_uuid_is_accepted_and_lower_cased() -> None:
    result = validate_snapshots([snap("2026-11-22T10:00:15Z", s(A.upper(), 9))], RULES)

    assert result.quarantined == []
    assert result.snapshots[0].samples[0].account_id == A


def test_same_account_twice_in_a_snapshot_is_unreadable_in_it_whichever_copy_comes_first() -> None:
    # shared/spec/exporter-api.md: every copy is quarantined; keeping "the first" billed the
    # wrong copy's whole jump when the first was the wrong one
    for copies in ((s(A, 1), s(A.upper(), 2)), (s(A.upper(), 2), s(A, 1))):
        result = validate_snapshots([snap("2026-11-22T10:00:15Z", *copies, s(B, 3))], RULES)

        assert [(x.account_id, x.total_bytes) for x in result.snapshots[0].samples] == [(B, 3)]
        assert reasons(result) == ["account_duplicated_in_snapshot"] * 2
        assert result.snapshots[0].unreadable_accounts == frozenset({A})


def test_a_duplicated_copy_that_is_itself_invalid_still_makes_the_account_unreadable() -> None:
    result = validate_snapshots([snap("2026-11-22T10:00:15Z", s(A, 1), s(A, -5))], RULES)

    assert result.snapshots[0].samples == ()
    assert sorted(reasons(result)) == ["account_duplicated_in_snapshot", "total_bytes_negative"]
    assert result.snapshots[0].unreadable_accounts == frozenset({A})


def test_quarantine_records_are_capped_and_the_rest_counted_per_reason() -> None:
    result = ValidationResult(max_records=3)
    samples = [s(A, -1)] * 5 + [{"account_id": "nope", "total_bytes": 1}] * 2
    validate_snapshots([snap("2026-11-22T10:00:15Z", *samples)], RULES, result)

    assert len(result.quarantined) == 3
    assert result.quarantined_count == 7
    assert result.overflow == {"total_bytes_negative": 2, "account_id_invalid": 2}


def test_snapshot_with_only_bad_samples_still_advances_the_ordering() -> None:
    result = validate_snapshots(
        [
            snap("2026-11-22T10:01:00Z", s("bad")),
            snap("2026-11-22T10:01:00Z", s(A, 1)),
        ],
        RULES,
    )

    assert [sn.samples for sn in result.snapshots] == [()]
    assert reasons(result) == ["account_id_invalid", "snapshot_duplicated"]


# --- quarantine records -------------------------------------------------------------------------


def test_quarantine_record_content_and_stable_digest() -> None:
    raw = [snap("2026-11-22T10:00:15Z", s(A, -5)), snap(12, s(B, 1))]

    first = validate_snapshots(raw, RULES).quarantined
    second = validate_snapshots(raw, RULES).quarantined

    assert first == second
    negative, invalid_time = first
    assert negative.account_id == A
    assert negative.raw == f'{{"account_id": "{A}", "total_bytes": -5}}'
    assert invalid_time.taken_at == "12"
    assert len(negative.digest) == 32
    assert negative.digest != invalid_time.digest


def test_quarantine_digest_depends_on_reason_time_and_content() -> None:
    def digest(taken_at: str, sample: object) -> str:
        return validate_snapshots([snap(taken_at, sample)], RULES).quarantined[0].digest

    base = digest("2026-11-22T10:00:15Z", s(A, -5))
    assert digest("2026-11-22T10:00:15Z", s(A, -5)) == base
    assert digest("2026-11-22T10:00:16Z", s(A, -5)) != base
    assert digest("2026-11-22T10:00:15Z", s(A, -6)) != base
    assert digest("2026-11-22T10:00:15Z", s(A, -5.0)) != base


def test_out_of_range_taken_at_is_quarantined() -> None:
    result = validate_snapshots([snap("0001-01-01T00:00:00+01:00", s(A))], RULES)

    assert reasons(result) == ["taken_at_invalid"]


def test_accounts_with_unreadable_samples_are_named_on_the_snapshot() -> None:
    good = "6f1c2a4e-0b7d-4c55-9a0e-3f2b8d1e7c90"
    bad_value = "0A7F3E55-1C2D-4E6F-8A9B-0C1D2E3F4A5B"
    raw = RawSnapshot(
        "2026-11-22T10:00:10Z",
        (
            {"account_id": good, "total_bytes": 5},
            {"account_id": bad_value, "total_bytes": -1},
            {"account_id": "not-a-uuid", "total_bytes": 3},
        ),
    )
    result = validate_snapshots([raw], RULES)
    (snapshot,) = result.snapshots
    assert snapshot.unreadable_accounts == frozenset({bad_value.lower()})
    assert len(result.quarantined) == 2
