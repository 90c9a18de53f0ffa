"""Bucket marks: what the quota item of an account-month knows about the entries it owns.

Every usage entry is written as part of a plan reserved on the quota item of its account and
month (``service/commit.py``). The reservation that stores a plan also stores, per
(source, node), the latest minute of any usage it reserved: its *mark*. So, on a quota item that
has marks, a usage bucket of (source, node) at a minute after that mark cannot have an entry:
no plan ever held it. A run that bills new minutes then needs no read to learn that they are new.

The marks are exact only on items created with them. A quota item written before marks existed
has none (``QuotaState.marks`` is ``None``): there every bucket may exist and is looked up, as
before. Corrections are always looked up (their keys are variants of billed minutes).

Reading the quota item eventually consistently is safe with marks: a stale item has an older
version, and the reservation, conditioned on that version, fails and the run reads again
strongly consistently.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from minutemeter.domain.model import CorrectionSpec, MinuteUsage, QuotaPlan

Marks = Mapping[str, datetime]


def mark_key(source_id: str, node_id: str) -> str:
    """The key of a (source, node) in a quota item's marks: length-prefixed, so that no two
    pairs share a key whatever characters the ids hold."""
    return f"{len(source_id)}:{source_id}{node_id}"


def mark_source(key: str) -> str | None:
    """The source id of a :func:`mark_key`; ``None`` for a key not in that form."""
    length, colon, rest = key.partition(":")
    if not (colon and length.isdigit() and 0 < int(length) <= len(rest)):
        return None
    return rest[: int(length)]


def may_exist(marks: Marks | None, source_id: str, item: MinuteUsage | CorrectionSpec) -> bool:
    """Whether ``item``'s entry may already be written (False only when the marks prove not)."""
    if marks is None or isinstance(item, CorrectionSpec):
        return True
    mark = marks.get(mark_key(source_id, item.node_id))
    return mark is not None and item.minute <= mark


def marks_after(marks: Marks | None, plan: QuotaPlan) -> dict[str, datetime] | None:
    """The marks once ``plan`` is reserved; ``None`` keeps an item without marks without them
    (its older entries were never marked, so a mark on it would prove nothing)."""
    if marks is None:
        return None
    after = dict(marks)
    for usage in plan.usages:
        key = mark_key(plan.source_id, usage.node_id)
        current = after.get(key)
        if current is None or usage.minute > current:
            after[key] = usage.minute
    return after
