"""Sample validation: a bad sample is quarantined with its reason, never silently dropped."""

from __future__ import annotations

import json
import re
from collections import Counter
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


# Why a reader found a sample's value unreadable, in the sample's ``unreadable`` field (a
# Prometheus float that is not an exact byte count); any other text there is ignored.
READER_VALUE_REASONS = frozenset({
    "value_not_integral", "value_nan", "value_infinite", "value_above_2_53",
})

MAX_QUARANTINE_RECORDS = 1000  # kept one by one per result; past it, counted per reason


@dataclass
class ValidationResult:
    """Validated snapshots and quarantined samples, in the order the exporter sent them.

    At most ``max_records`` quarantined samples are kept as records; the rest are counted per
    reason in ``overflow`` (a systematically bad exporter must not cost memory or writes per
    sample). ``quarantined_count`` counts them all.
    """

    snapshots: list[Snapshot] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)
    last_taken_at: datetime | None = None
    max_records: int = MAX_QUARANTINE_RECORDS
    overflow: dict[str, int] = field(default_factory=dict)
    quarantined_count: int = 0

    def quarantine(self, record: Quarantined) -> None:
        self.quarantined_count += 1
        if len(self.quarantined) < self.max_records:
            self.quarantined.append(record)
        else:
            self.overflow[record.reason] = self.overflow.get(record.reason, 0) + 1

    def take_snapshots(self) -> list[Snapshot]:
        """The snapshots validated so far, handed over and forgotten (pages stream through)."""
        taken, self.snapshots = self.snapshots, []
        return taken


def validate_snapshots(
    raw_snapshots: Iterable[RawSnapshot],
    rules: SampleRules,
    result: ValidationResult | None = None,
) -> ValidationResult:
    """Check snapshots in the order the exporter sent them, appending to ``result``.

    Snapshots must have strictly ascending ``taken_at`` across pages; one that does not, or whose
    time is invalid, outside the window or beyond the clock tolerance, has all its samples
    quarantined. Within a valid snapshot each sample is checked on its own, and an account listed
    more than once is unreadable in that snapshot, whichever copy comes first: every copy is
    quarantined (shared/spec/exporter-api.md), so its next readable sample diffs against its
    last readable one.
    """
    result = result if result is not None else ValidationResult()
    for raw in raw_snapshots:
        reason, taken_at = _check_snapshot_time(raw.taken_at, rules, result.last_taken_at)
        if reason is not None or taken_at is None:
            for sample in raw.samples:
                result.quarantine(_quarantine(reason or "taken_at_invalid", raw, sample))
            continue
        result.last_taken_at = taken_at
        checked = [(sample, *_check_sample(sample, taken_at, rules.max_counter))
                   for sample in raw.samples]
        copies = Counter(_listed_account(sample) for sample in raw.samples)
        samples: list[Sample] = []
        unreadable: set[str] = set()
        for sample, sample_reason, valid in checked:
            if valid is not None and copies[valid.account_id] > 1:  # whatever the other copy
                sample_reason, valid = "account_duplicated_in_snapshot", None
            if valid is None:
                result.quarantine(_quarantine(sample_reason or "invalid", raw, sample))
                account = sample.get("account_id") if isinstance(sample, dict) else None
                if isinstance(account, str) and _UUID.fullmatch(account):
                    unreadable.add(account.lower())
                continue
            samples.append(valid)
        readable = {sample.account_id for sample in samples}
        result.snapshots.append(
            Snapshot(taken_at=taken_at, samples=tuple(samples),
                     unreadable_accounts=frozenset(unreadable - readable))
        )
    return result


def _listed_account(sample: object) -> str | None:
    """The account a sample names, if it names one by UUID (valid value or not)."""
    account = sample.get("account_id") if isinstance(sample, dict) else None
    return account.lower() if isinstance(account, str) and _UUID.fullmatch(account) else None


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
    declared = raw.get("unreadable")
    if isinstance(declared, str) and declared in READER_VALUE_REASONS:
        return declared, None
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
