"""Deterministic identifiers. Same input, same id: replays hit the same item."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime

from minutemeter.domain.model import BucketRef, CorrectionSpec, LedgerEntry, MinuteUsage
from minutemeter.domain.timeutil import format_second

LEDGER_NAMESPACE = uuid.UUID("6b3f7a52-3c1e-5d8a-9f43-2a1b8c7d9e10")


def bucket_key(source_id: str, node_id: str, account_id: str, minute: datetime) -> str:
    """The identity of a minute bucket: ``source/node/account/minute``."""
    return f"{source_id}/{node_id}/{account_id}/{format_second(minute)}"


def ledger_id(source_id: str, node_id: str, account_id: str, minute: datetime) -> str:
    """UUIDv5 over the bucket key: the same bucket always gets the same ledger id."""
    return str(uuid.uuid5(LEDGER_NAMESPACE, bucket_key(source_id, node_id, account_id, minute)))


def correction_variant(sequence: int, target_bytes: int) -> str:
    """``C<n>-<target>``: the bucket's n-th correction (from 0), bringing it to ``target``.
    Two reconciles of the same history compute the same one; a later change of history gets
    the next sequence number, so going back to an earlier total is a new correction too."""
    return f"C{sequence}-{target_bytes}"


def entry_id(ref: BucketRef) -> str:
    """The ledger id of the entry at ``ref``: UUIDv5 over the bucket key for the usage entry
    (:func:`ledger_id`), and over the bucket key and the variant for a correction."""
    key = bucket_key(ref.source_id, ref.node_id, ref.account_id, ref.minute)
    return str(uuid.uuid5(LEDGER_NAMESPACE, f"{key}#{ref.variant}" if ref.variant else key))


def batch_id(
    run_id: str, account_id: str, month: str, first_minute: datetime, quota_version: int
) -> str:
    """The id of one quota reservation made by run ``run_id`` on top of ``quota_version``."""
    text = f"{run_id}/{account_id}/{month}/{format_second(first_minute)}/{quota_version}"
    return str(uuid.uuid5(LEDGER_NAMESPACE, text))


def content_digest(*parts: object) -> str:
    """A short stable digest of JSON-serialisable parts (for quarantine and event records)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def item_ref(source_id: str, item: MinuteUsage | CorrectionSpec) -> BucketRef:
    """The ledger key of a bucket's usage entry, or of a correction of it."""
    if isinstance(item, CorrectionSpec):
        usage, variant = item.usage, correction_variant(item.sequence, item.target_bytes)
    else:
        usage, variant = item, ""
    return BucketRef(source_id, usage.node_id, usage.account_id, usage.minute, variant)


def entry_ref(entry: LedgerEntry) -> BucketRef:
    return item_ref(entry.source_id, entry.correction or entry.usage)
