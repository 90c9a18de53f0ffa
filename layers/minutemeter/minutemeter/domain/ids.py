"""Deterministic identifiers. Same input, same id: replays hit the same item."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime

from minutemeter.domain.timeutil import format_second

LEDGER_NAMESPACE = uuid.UUID("6b3f7a52-3c1e-5d8a-9f43-2a1b8c7d9e10")


def bucket_key(source_id: str, node_id: str, account_id: str, minute: datetime) -> str:
    """The identity of a minute bucket: ``source/node/account/minute``."""
    return f"{source_id}/{node_id}/{account_id}/{format_second(minute)}"


def ledger_id(source_id: str, node_id: str, account_id: str, minute: datetime) -> str:
    """UUIDv5 over the bucket key: the same bucket always gets the same ledger id."""
    return str(uuid.uuid5(LEDGER_NAMESPACE, bucket_key(source_id, node_id, account_id, minute)))


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
