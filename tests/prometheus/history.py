"""The oracle of the prometheus tests, computed from a generated history alone.

:func:`oracle` bills a :class:`~minutemeter.local.prometheus_history.NodeHistory` by the rules
of the spec, written out here independently of minutemeter's code: the first scrape at or after
the source's start is the baseline, a later new account counts from zero, a lower value is a
reset counted from zero, a value that is not an exact whole number (fractional, NaN, Inf, over
2**53) is skipped, and each increase belongs to the UTC minute of its later sample.
"""

from __future__ import annotations

import math
from collections import defaultdict

from minutemeter.local.prometheus_history import NodeHistory


def _exact(text: str) -> int | None:
    number = float(text)
    if math.isnan(number) or math.isinf(number) or not number.is_integer():
        return None
    return int(number) if 0 <= number <= 2**53 else None


def oracle(history: NodeHistory, *, start_ms: int, until_ms: int) -> dict[tuple[str, int], int]:
    """Bytes per (account, minute start in ms) billed for ``[start_ms, until_ms)``."""
    usage: dict[tuple[str, int], int] = defaultdict(int)
    last: dict[str, int] = {}
    baseline = True
    for ms, values in history.scrapes:
        if not start_ms <= ms < until_ms:
            continue
        for (account, _pod), text in values.items():
            value = _exact(text)
            if value is None:
                continue
            if not baseline:
                previous = last.get(account, 0)
                increase = value - previous if value >= previous else value
                usage[(account, ms // 60_000 * 60_000)] += increase
            last[account] = value
        baseline = False
    return {key: count for key, count in usage.items() if count > 0}
