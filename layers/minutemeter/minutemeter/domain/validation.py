"""Sample validation: a bad sample is quarantined with its reason, never silently dropped."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from minutemeter.domain.errors import InputError
from minutemeter.domain.ids import content_digest
from minutemeter.domain.model import Quarantined, RawSnapshot, Sample, Snapshot, Window
from minutemeter.domain.timeutil import parse_rfc3339

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


@dataclass(frozen=True)
class SampleRules:
    """Bounds a sample must meet. Times are UTC; ``tolerance`` is the allowed clock difference."""

    window: Window
    now: datetime
    tolerance: timedelta
    max_counter: int


@dataclass
class ValidationResult:
    snapshots: list[Snapshot] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)
    last_taken_at: datetime | None = None


def validate_snapshots(
    raw_snapshots: Iterable[RawSnapshot],
    rules: SampleRules,
    result: ValidationResult | None = None,
) -> ValidationResult:
    """Check snapshots in the order the exporter sent them, appending to ``result``.

    Snapshots must have strictly ascending ``taken_at`` across pages; one that does not, or whose
    time is invalid, outside the window or beyond the clock tolerance, has all its samples
    quarantined. Within a valid snapshot each sample is checked on its own.
    """
    result = result or ValidationResult()
    for raw in raw_snapshots:
        reason, taken_at = _check_snapshot_time(raw.taken_at, rules, result.last_taken_at)
        if reason is not None or taken_at is None:
            for sample in raw.samples:
                result.quarantined.append(_quarantine(reason or "taken_at_invalid", raw, sample))
            continue
        result.last_taken_at = taken_at
        samples: list[Sample] = []
        seen: set[str] = set()
        unreadable: set[str] = set()
        for sample in raw.samples:
            sample_reason, valid = _check_sample(sample, taken_at, rules.max_counter)
            if valid is not None and valid.account_id in seen:
                sample_reason, valid = "account_duplicated_in_snapshot", None
            if valid is None:
                result.quarantined.append(_quarantine(sample_reason or "invalid", raw, sample))
                account = sample.get("account_id") if isinstance(sample, dict) else None
                if isinstance(account, str) and _UUID.fullmatch(account):
                    unreadable.add(account.lower())
                continue
            seen.add(valid.account_id)
            samples.append(valid)
        result.snapshots.append(
            Snapshot(taken_at=taken_at, samples=tuple(samples),
                     unreadable_accounts=frozenset(unreadable - seen))
        )
    return result


def _check_snapshot_time(
    raw: object, rules: SampleRules, last: datetime | None
) -> tuple[str | None, datetime | None]:
    try:
        taken_at = parse_rfc3339(raw, what="taken_at")
    except InputError:
        return "taken_at_invalid", None
    if taken_at > rules.now + rules.tolerance:
        return "taken_at_beyond_clock_tolerance", None
    if not rules.window.since <= taken_at < rules.window.until:
        return "taken_at_outside_window", None
    if last is not None and taken_at == last:
        return "snapshot_duplicated", None
    if last is not None and taken_at < last:
        return "snapshot_out_of_order", None
    return None, taken_at


def is_account_id(text: str) -> bool:
    """A canonical 8-4-4-4-12 hexadecimal UUID (any case)."""
    return _UUID.fullmatch(text) is not None


def _check_sample(
    raw: object, taken_at: datetime, max_counter: int
) -> tuple[str | None, Sample | None]:
    if not isinstance(raw, dict):
        return "sample_not_object", None
    account = raw.get("account_id")
    if not isinstance(account, str) or _UUID.fullmatch(account) is None:
        return "account_id_invalid", None
    account_id = account.lower()
    total = raw.get("total_bytes")
    if isinstance(total, bool) or not isinstance(total, int):
        return "total_bytes_not_integer", None
    if total < 0:
        return "total_bytes_negative", None
    if total > max_counter:
        return "total_bytes_too_large", None
    return None, Sample(account_id=account_id, total_bytes=total, taken_at=taken_at)


def _quarantine(reason: str, snapshot: RawSnapshot, sample: object) -> Quarantined:
    account = sample.get("account_id") if isinstance(sample, dict) else None
    raw_text = json.dumps(sample, sort_keys=True, default=str)[:2048]
    taken_at = snapshot.taken_at if isinstance(snapshot.taken_at, str) else repr(snapshot.taken_at)
    return Quarantined(
        reason=reason,
        taken_at=taken_at[:64],
        account_id=account[:64] if isinstance(account, str) else None,
        raw=raw_text,
        digest=content_digest(reason, taken_at, raw_text),
    )
