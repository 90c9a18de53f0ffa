"""Fencing: writes that hold only while the source's lease token is still the writer's.

The token is a field of the sync-state item (``keys.state_key``), so the sync state, the job
result and the checkpoints (:mod:`.sync`, :mod:`.checkpoints`) all fence on that one item. A
write given ``fence=None`` is not fenced.
"""

from __future__ import annotations

from typing import Any

from minutemeter.adapters.dynamo.base import DynamoTable
from minutemeter.adapters.dynamo.state.keys import state_key
from minutemeter.domain.errors import LeaseLostError


def fenced(
    condition: str, attribute_values: dict[str, Any], fence: int | None
) -> tuple[str, dict[str, Any]]:
    """``condition`` and its values, plus ``lease_token = :fence`` when ``fence`` is given."""
    if fence is None:
        return condition, attribute_values
    return f"lease_token = :fence AND {condition}", {**attribute_values, ":fence": fence}


def lease_token(table: DynamoTable, source_id: str) -> int | None:
    """The source's current lease token (strongly consistent); None before its first lease."""
    item = table.get(state_key(source_id)) or {}
    token = item.get("lease_token")
    return int(token) if token is not None else None


def check_fence(table: DynamoTable, source_id: str, fence: int | None, detail: str) -> None:
    """After a failed condition: raise LeaseLostError if the token is not ``fence``."""
    if fence is None:
        return
    current = lease_token(table, source_id)
    if current != fence:
        raise LeaseLostError(source_id, fence, f"{detail} (current token {current})")
