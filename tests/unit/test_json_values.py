"""json_values.py: domain values as JSON, the same conversion for the CLI, the API and storage."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from minutemeter.domain.model import JobResult, JobStatus, ResetPolicy, SourceKind
from minutemeter.json_values import decimal_text, map_leaves, to_json, to_json_text
from minutemeter.presenters import job_to_dict

AT = datetime(2026, 11, 22, 10, 0, 15, 250_000, tzinfo=UTC)
WHOLE = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
DIGITS_38 = Decimal("1234567890123456789012345678.9012345678")  # DynamoDB's most digits


def test_times_at_either_precision() -> None:
    assert to_json(AT, times="second") == "2026-11-22T10:00:15Z"
    assert to_json(AT, times="microsecond") == "2026-11-22T10:00:15.250000Z"
    assert to_json(WHOLE, times="second") == "2026-11-22T10:00:00Z"
    assert to_json(WHOLE, times="microsecond") == "2026-11-22T10:00:00.000000Z"


def test_decimals_exact_as_text_or_kept_as_numbers() -> None:
    assert to_json(DIGITS_38, times="second") == "1234567890123456789012345678.9012345678"
    assert to_json(Decimal("1E-9"), times="second") == "0.000000001"
    assert decimal_text(Decimal("1.50")) == "1.50"
    kept = to_json(DIGITS_38, times="second", decimals="number")
    assert isinstance(kept, Decimal) and kept == DIGITS_38


def test_nested_enums_mappings_and_sequences() -> None:
    value = {"policy": ResetPolicy.SKIP, 7: [SourceKind.EXPORTER, (WHOLE, None)],
             "inner": {"kinds": (SourceKind.EXPORTER,), "none": None, "flag": True}}
    assert to_json(value, times="second") == {
        "policy": "skip", "7": ["exporter", ["2026-11-22T10:00:00Z", None]],
        "inner": {"kinds": ["exporter"], "none": None, "flag": True},
    }


def test_none_and_json_scalars_stay_as_they_are() -> None:
    for value in (None, "text", 0, 1.5, False):
        assert to_json(value, times="second") == value


@dataclass(frozen=True)
class _Reading:
    at: datetime
    amount: Decimal
    tags: list[JobStatus] = field(default_factory=list)


def test_dataclasses_become_dicts_of_their_fields() -> None:
    reading = _Reading(AT, Decimal("2.5"), [JobStatus.OK])
    assert to_json(reading, times="second") == {
        "at": "2026-11-22T10:00:15Z", "amount": "2.5", "tags": ["ok"]}
    assert to_json([reading], times="microsecond", decimals="number") == [
        {"at": "2026-11-22T10:00:15.250000Z", "amount": Decimal("2.5"), "tags": ["ok"]}]


def test_job_results_are_stored_and_shown_to_the_microsecond() -> None:
    job = JobResult(job_id="j1", job="collect", source_id="s1", started_at=AT,
                    status=JobStatus.PARTIAL, notes=["a"], health={"failure_rate": 0.25})
    summary = job_to_dict(job)
    assert summary["started_at"] == "2026-11-22T10:00:15.250000Z"
    assert summary["status"] == "partial" and summary["finished_at"] is None
    assert summary["notes"] == ["a"] and summary["health"] == {"failure_rate": 0.25}
    assert json.loads(json.dumps(summary)) == summary


def test_json_text_compact_or_indented_and_strict() -> None:
    document = {"at": WHOLE, "amount": DIGITS_38, "kind": SourceKind.EXPORTER}
    assert to_json_text(document, times="second") == (
        '{"at":"2026-11-22T10:00:00Z","amount":"1234567890123456789012345678.9012345678",'
        '"kind":"exporter"}')
    assert to_json_text({"a": [1]}, times="second", indent=2) == '{\n  "a": [\n    1\n  ]\n}'
    with pytest.raises(ValueError):
        to_json_text({"rate": float("nan")}, times="second")


def test_map_leaves_rebuilds_containers_around_converted_leaves() -> None:
    assert map_leaves({"a": [1, (2, {"b": 3})]}, lambda v: v * 10) == {"a": [10, [20, {"b": 30}]]}
