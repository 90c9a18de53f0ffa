"""An independent oracle: what should be billed per (account, minute), straight from the spec.

Deliberately written without the production domain code, so that tests compare two
implementations of shared/spec/exporter-api.md "Usage semantics".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime


def expected_usage(
    history: Sequence[tuple[datetime, dict[str, int]]],
    *,
    start: datetime,
    until: datetime,
    reset_policy: str = "skip",
) -> dict[tuple[str, str], int]:
    """Bytes per (account_id, minute as ``YYYY-MM-DDTHH:MM:00Z``) for samples in [start, until).

    The first snapshot at or after ``start`` is the baseline; later new accounts count from zero;
    a lower value is a reset (``skip``: bills nothing; ``from-zero``: bills the new value).
    Minutes with zero usage are left out.
    """
    last: dict[str, int] = {}
    usage: dict[tuple[str, str], int] = defaultdict(int)
    first = True
    for taken_at, values in sorted(history, key=lambda item: item[0]):
        if taken_at < start or taken_at >= until:
            continue
        minute = taken_at.strftime("%Y-%m-%dT%H:%M:00Z")
        for account, total in values.items():
            if account not in last:
                increase = 0 if first else total
            elif total >= last[account]:
                increase = total - last[account]
            else:
                increase = total if reset_policy == "from-zero" else 0
            last[account] = total
            if increase:
                usage[(account, minute)] += increase
        first = False
    return dict(usage)
